from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

with DAG(dag_id="atd_broken", schedule_interval=None) as dag:
    DockerOperator(task_id="broken", image="busybox", auto_remove=True
