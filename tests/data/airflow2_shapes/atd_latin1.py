# -*- coding: latin-1 -*-
# Datos de tráfico (the comment is Latin-1, as the file says)
from datetime import datetime

from airflow.models import DAG
from airflow.operators.bash import BashOperator

with DAG(dag_id="atd_latin1", start_date=datetime(2023, 1, 1), schedule_interval=None, tags=["repo:atd-traffic"], default_args={"owner": "airflow"}) as dag:
    BashOperator(task_id="hola", bash_command="echo señal")
