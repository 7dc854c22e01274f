import os

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator
from pendulum import datetime

from utils.knack import get_date_filter_arg
from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

default_args = {
    "owner": "airflow",
    "start_date": datetime(2020, 1, 1, tz="America/Chicago"),
    "on_failure_callback": task_fail_slack_alert,
}

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack AMD Data Tracker", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.appId"},
    "KNACK_API_KEY": {"opitem": "Knack AMD Data Tracker", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.apiKey"},
    # seeded for preflight: the item is misspelt
    "AGOL_USERNAME": {"opitem": "ArcGIS Online Scripts Publisher", "opfield": "production.Username"},
    # seeded for preflight: the section has no such field
    "SOCRATA_SECRET": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.apiSecret"},
}

CONTAINERS = ["view_1", "view_2", "view_3"]

with DAG(
    dag_id="atd_knack_containers",
    default_args=default_args,
    schedule_interval="15 * * * *",
    tags=["repo:atd-knack-services", "knack"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    for container in CONTAINERS:
        DockerOperator(
            task_id=f"knack_{container}_to_agol",
            image=f"atddocker/atd-knack-services:{DEPLOYMENT_ENVIRONMENT}",
            auto_remove=True,
            command=f"./atd-knack-services/records_to_agol.py -c {container} {get_date_filter_arg()}",
            environment=env_vars,
            tty=True,
            docker_conn_id="docker_hub",
        )

    # cleanup runs without secrets
    DockerOperator(
        task_id="cleanup",
        image="atddocker/atd-knack-services:production",
        auto_remove=True,
        command="./cleanup.py",
    )
