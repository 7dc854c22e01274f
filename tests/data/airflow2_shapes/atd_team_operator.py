# A task on the team's own DockerOperator subclass
from datetime import datetime

from airflow.models import DAG

from utils.onepassword import get_env_vars_task
from utils.operators import BashOperator, TeamDockerOperator
from utils.slack_operator import task_fail_slack_alert

REQUIRED_SECRETS = {"MAPBOX_TOKEN": {"opitem": "Mapbox", "opfield": "token"}}

with DAG(
    dag_id="atd_team_operator",
    default_args={"owner": "airflow", "start_date": datetime(2023, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="@daily",
    tags=["repo:atd-maps"],
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)
    tiles = TeamDockerOperator(task_id="tiles", image="atddocker/atd-maps:production", environment=env_vars)
    done = BashOperator(task_id="done", bash_command="echo done")
    tiles >> done
