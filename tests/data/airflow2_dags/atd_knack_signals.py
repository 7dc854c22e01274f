# Publish signal records from Knack to Socrata and the warehouse
import os

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator
from pendulum import datetime, duration

from utils.knack import get_date_filter_arg
from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "start_date": datetime(2015, 1, 1, tz="America/Chicago"),
    "retries": 0,
    "execution_timeout": duration(minutes=15),
    "on_failure_callback": task_fail_slack_alert,
}

docker_image = f"atddocker/atd-knack-services:{DEPLOYMENT_ENVIRONMENT}"

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {
        "opitem": "Knack AMD Data Tracker",
        "opfield": f"{DEPLOYMENT_ENVIRONMENT}.appId",
    },
    "KNACK_API_KEY": {
        "opitem": "Knack AMD Data Tracker",
        "opfield": f"{DEPLOYMENT_ENVIRONMENT}.apiKey",
    },
    "SOCRATA_APP_TOKEN": {
        "opitem": "Socrata Key ID, Secret, and Token",
        "opfield": "socrata.appToken",
    },
    "PGREST_JWT": {
        "opitem": "atd-knack-services PostgREST",
        "opfield": "production.jwt",
    },
}

with DAG(
    dag_id="atd_knack_signals",
    description="publish signal records from Knack to Socrata",
    default_args=default_args,
    schedule_interval="45 7 * * *" if DEPLOYMENT_ENVIRONMENT == "production" else None,
    tags=["repo:atd-knack-services", "knack", "socrata"],
    catchup=False,
) as dag:
    app_name = "data-tracker"
    container = "view_197"
    date_filter_arg = get_date_filter_arg(should_replace_monthly=True)

    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    # records -> postgrest
    t1 = DockerOperator(
        task_id="atd_knack_signals_to_postgrest",
        image=docker_image,
        auto_remove=True,
        command=f"./atd-knack-services/records_to_postgrest.py -a {app_name} -c {container} {date_filter_arg}",
        environment=env_vars,
        tty=True,
        force_pull=True,
    )

    t2 = DockerOperator(
        task_id="atd_knack_signals_to_socrata",
        image=docker_image,
        auto_remove=True,
        command=f"./atd-knack-services/records_to_socrata.py -a {app_name} -c {container} {date_filter_arg}",
        environment=env_vars,
        tty=True,
    )

    env_vars >> t1 >> t2
