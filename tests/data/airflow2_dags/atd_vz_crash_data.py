# Vision Zero: crash records from the state system into the VZ database, then to the map
import os

from airflow.decorators import task
from airflow.models import DAG
from airflow.models.param import Param
from airflow.operators.docker_operator import DockerOperator
from pendulum import datetime, duration

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert, task_fail_slack_alert_critical

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

DEFAULT_ARGS = {
    "owner": "airflow",
    "depends_on_past": False,
    "start_date": datetime(2023, 1, 1, tz="America/Chicago"),
    "retries": 0,
    "execution_timeout": duration(minutes=60),
}

CRIS_SECRETS = {
    "SFTP_HOST": {"opitem": "Vision Zero CRIS Import", "opfield": "sftp.host"},
    "SFTP_USER": {"opitem": "Vision Zero CRIS Import", "opfield": "sftp.username"},
    "SFTP_PASSWORD": {"opitem": "Vision Zero CRIS Import", "opfield": "sftp.password"},
    "HASURA_GRAPHQL_ENDPOINT": {
        "opitem": "Vision Zero graphql-engine Endpoints",
        "opfield": f"{DEPLOYMENT_ENVIRONMENT}.GraphQL Endpoint",
    },
    "HASURA_GRAPHQL_ADMIN_SECRET": {
        "opitem": "Vision Zero graphql-engine Endpoints",
        "opfield": f"{DEPLOYMENT_ENVIRONMENT}.Admin Key",
    },
}

MAP_SECRETS = {
    "MAPBOX_TOKEN": {"opitem": "Vision Zero Mapbox", "opfield": ".token"},
}

with DAG(
    dag_id="atd_vz_crash_data",
    default_args=DEFAULT_ARGS,
    schedule_interval="0 8 * * *",
    on_failure_callback=task_fail_slack_alert_critical,
    params={"full_reload": Param(False, type="boolean")},
    tags=["repo:atd-vz-data", "vision-zero"],
    catchup=False,
) as dag:

    @task
    def log_params(**context):
        print(context["params"])

    cris_env = get_env_vars_task(CRIS_SECRETS)
    map_env = get_env_vars_task(MAP_SECRETS)

    cris_import = DockerOperator(
        task_id="cris_import",
        image=f"atddocker/vz-cris-import:{DEPLOYMENT_ENVIRONMENT}",
        auto_remove=True,
        command="./cris_import.py {{ '--full' if params.full_reload else '' }}",
        environment=cris_env,
        tty=True,
        force_pull=True,
        on_failure_callback=task_fail_slack_alert,
    )

    map_refresh = DockerOperator(
        task_id="map_refresh",
        image=f"atddocker/vz-map:{DEPLOYMENT_ENVIRONMENT}",
        auto_remove=True,
        command="./refresh_tiles.py",
        environment=map_env,
        tty=True,
    )

    log_params() >> cris_env >> cris_import >> map_env >> map_refresh
