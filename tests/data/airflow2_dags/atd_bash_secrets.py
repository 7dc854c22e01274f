# HAND-ONLY: secrets from XCom go into a BashOperator's env (SecretDockerOperator cannot take this over)
from datetime import datetime

from airflow.models import DAG
from airflow.operators.bash_operator import BashOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

REQUIRED_SECRETS = {
    "AGOL_USERNAME": {"opitem": "ArcGIS Online (AGOL) Scripts Publisher", "opfield": "production.Username"},
    "AGOL_PASSWORD": {"opitem": "ArcGIS Online (AGOL) Scripts Publisher", "opfield": "production.Password"},
}

with DAG(
    dag_id="atd_agol_backup",
    default_args={"owner": "airflow", "start_date": datetime(2023, 3, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="@daily",
    tags=["repo:atd-agol-scripts"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    backup = BashOperator(
        task_id="agol_backup",
        bash_command="python /opt/agol/backup.py",
        env=env_vars,
    )

    env_vars >> backup
