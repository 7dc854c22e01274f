# HAND-ONLY: the whole worker environment goes into the container
import os
from datetime import datetime

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

from utils.slack_operator import task_fail_slack_alert

with DAG(
    dag_id="atd_legacy_etl",
    default_args={"owner": "airflow", "start_date": datetime(2020, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="0 2 * * *",
    tags=["repo:atd-legacy-etl"],
    catchup=False,
) as dag:
    DockerOperator(
        task_id="legacy_etl",
        image="atddocker/atd-legacy-etl:production",
        auto_remove=True,
        command="./run_all.sh",
        environment=dict(os.environ),
        tty=True,
    )
