# Lives outside the DAG folder; the folder holds a symlink to it
from datetime import datetime

from airflow.models import DAG
from airflow.operators.bash import BashOperator

with DAG(dag_id="atd_linked", start_date=datetime(2023, 1, 1), schedule_interval=None, tags=["repo:atd-linked"]) as dag:
    BashOperator(task_id="linked", bash_command="echo linked")
