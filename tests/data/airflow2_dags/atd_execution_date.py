# HAND-ONLY: {{ execution_date }} no longer exists in Airflow 3
from datetime import datetime

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

REQUIRED_SECRETS = {
    "SOCRATA_APP_TOKEN": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.appToken"},
}

with DAG(
    dag_id="atd_daily_counts",
    default_args={"owner": "airflow", "start_date": datetime(2022, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="0 6 * * *",
    tags=["repo:atd-traffic-counts"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    DockerOperator(
        task_id="daily_counts",
        image="atddocker/atd-traffic-counts:production",
        auto_remove=True,
        command="./counts.py --date {{ execution_date.strftime('%Y-%m-%d') }}",
        environment=env_vars,
        tty=True,
    )
