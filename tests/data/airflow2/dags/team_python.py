"""An Airflow 2.9 DAG with a PythonOperator from its old module."""

from datetime import datetime

from airflow import DAG
from airflow.operators.python_operator import PythonOperator


def publish():
    print("published")


with DAG(dag_id="team_python", schedule_interval=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    PythonOperator(task_id="publish", python_callable=publish)
