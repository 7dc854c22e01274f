# One of the DAGs that fetch secrets with their own task instead of utils.onepassword
import os
from datetime import datetime, timedelta

import onepasswordconnectsdk
from airflow.decorators import task
from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator
from airflow.operators.python_operator import PythonOperator
from onepasswordconnectsdk.client import Client, new_client

from utils.slack_operator import task_fail_slack_alert

ONEPASSWORD_CONNECT_HOST = os.getenv("OP_CONNECT")
ONEPASSWORD_CONNECT_TOKEN = os.getenv("OP_API_TOKEN")
VAULT_ID = os.getenv("OP_VAULT_ID")
DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "start_date": datetime(2022, 6, 1),
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": task_fail_slack_alert,
}

REQUIRED_SECRETS = {
    "PARKING_FTP_HOST": {"opitem": "Parking Transactions FTP", "opfield": "production.host", "opvault": VAULT_ID},
    "PARKING_FTP_USER": {"opitem": "Parking Transactions FTP", "opfield": "production.username", "opvault": VAULT_ID},
    "PARKING_FTP_PASS": {"opitem": "Parking Transactions FTP", "opfield": "production.password", "opvault": VAULT_ID},
}


def print_done():
    print("transactions loaded")


with DAG(
    dag_id="atd_parking_transactions",
    default_args=default_args,
    schedule_interval="35 3 * * *",
    tags=["repo:atd-parking-data", "parking"],
    catchup=False,
) as dag:

    @task(task_id="get_env_vars", execution_timeout=timedelta(seconds=30))
    def get_env_vars():
        client: Client = new_client(ONEPASSWORD_CONNECT_HOST, ONEPASSWORD_CONNECT_TOKEN)
        return onepasswordconnectsdk.load_dict(client, REQUIRED_SECRETS)

    env_vars = get_env_vars()

    transactions = DockerOperator(
        task_id="parking_transactions",
        image=f"atddocker/atd-parking-data-meters:{DEPLOYMENT_ENVIRONMENT}",
        auto_remove=False,
        command="./txn_history.py -v --report transactions",
        environment=env_vars,
        tty=True,
    )

    done = PythonOperator(task_id="done", python_callable=print_done)

    transactions >> done
