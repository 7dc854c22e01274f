from datetime import datetime

from airflow.models import DAG
from airflow.operators.bash_operator import BashOperator

from utils.slack_operator import task_fail_slack_alert

with DAG(
    dag_id="atd_cleanup_logs",
    default_args={"owner": "airflow", "start_date": datetime(2021, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="@weekly",
    tags=["maintenance"],
    catchup=False,
) as dag:
    BashOperator(task_id="cleanup", bash_command="find /opt/airflow/logs -mtime +30 -delete")
