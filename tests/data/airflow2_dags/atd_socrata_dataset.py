import os
from datetime import datetime, timedelta

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "start_date": datetime(2021, 4, 1),
    "email_on_failure": False,
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": task_fail_slack_alert,
}

SOCRATA_SECRETS = {
    "SO_API_KEY": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.apiKeyId"},
    "SO_SECRET": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.apiKeySecret"},
    "SO_TOKEN": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.appToken"},
}

REQUIRED_SECRETS = {
    "AWS_ACCESS_KEY_ID": {"opitem": "Crash Data Bucket", "opfield": ".accessKeyId"},
    "AWS_SECRET_ACCESS_KEY": {"opitem": "Crash Data Bucket", "opfield": ".accessSecret"},
    "BUCKET_NAME": {"opitem": "Crash Data Bucket", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.bucket"},
}
# the Socrata credentials are shared with every publishing DAG
REQUIRED_SECRETS.update(SOCRATA_SECRETS)

with DAG(
    dag_id="atd_socrata_dataset",
    default_args=default_args,
    schedule_interval="0 4 * * *",
    dagrun_timeout=timedelta(minutes=60),
    tags=["repo:atd-socrata-publisher", "socrata"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    publish = DockerOperator(
        task_id="publish_dataset",
        image="atddocker/atd-socrata-publisher:production",
        auto_remove=True,
        command="python publish.py --dataset {{ var.value.socrata_dataset_id }}",
        environment=env_vars,
        tty=True,
    )

    refresh_views = DockerOperator(
        task_id="refresh_views",
        image="atddocker/atd-socrata-publisher:production",
        auto_remove=True,
        command="python refresh.py",
        docker_conn_id="docker_default",
        tty=True,
    )

    publish >> refresh_views
