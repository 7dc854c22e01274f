# HAND-ONLY: the secrets task's XCom is read by a second (Python) task as well as by Docker
from datetime import datetime

from airflow.decorators import task
from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

REQUIRED_SECRETS = {
    "PGREST_ENDPOINT": {"opitem": "atd-knack-services PostgREST", "opfield": "production.endpoint"},
    "PGREST_JWT": {"opitem": "atd-knack-services PostgREST", "opfield": "production.jwt"},
}

with DAG(
    dag_id="atd_postgrest_health",
    default_args={"owner": "airflow", "start_date": datetime(2023, 3, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="*/30 * * * *",
    tags=["repo:atd-knack-services"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    @task
    def check_endpoint(secrets):
        print("checking", secrets["PGREST_ENDPOINT"])

    check = check_endpoint(env_vars)

    sync = DockerOperator(
        task_id="sync",
        image="atddocker/atd-knack-services:production",
        auto_remove=True,
        command="./sync.py",
        environment=env_vars,
    )

    check >> sync
