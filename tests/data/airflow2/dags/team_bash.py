"""An Airflow 2.9 DAG as the team writes them (removed import path, schedule_interval)."""

from datetime import datetime

from airflow import DAG
from airflow.operators.bash_operator import BashOperator

with DAG(
    dag_id="team_bash",
    schedule_interval="0 6 * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["repo:atd-airflow"],
) as dag:
    BashOperator(task_id="hello", bash_command="echo hello from team_bash")
