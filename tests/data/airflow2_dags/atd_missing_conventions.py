from datetime import datetime

from airflow.models import DAG
from airflow.operators.bash_operator import BashOperator

with DAG(
    dag_id="atd_scratch_report",
    start_date=datetime(2024, 5, 1),
    schedule_interval=None,
    tags=["repo:atd-scratch"],
    catchup=False,
) as dag:
    BashOperator(task_id="report", bash_command="echo report")
