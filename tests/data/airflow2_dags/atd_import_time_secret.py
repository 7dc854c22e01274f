# Reads secrets while the file is parsed (every parse, every few seconds, on every scheduler loop)
from datetime import datetime

from airflow.models import DAG, Variable
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars
from utils.slack_operator import task_fail_slack_alert

DATASET_ID = Variable.get("socrata_dataset_id", default_var="abcd-1234")
SECRETS = get_env_vars({"MAPBOX_TOKEN": {"opitem": "Vision Zero Mapbox", "opfield": ".token"}})

with DAG(
    dag_id="atd_mapbox_tiles",
    default_args={"owner": "airflow", "start_date": datetime(2022, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval="0 5 * * *",
    tags=["repo:atd-vz-data"],
    catchup=False,
) as dag:
    DockerOperator(
        task_id="tiles",
        image="atddocker/vz-map:production",
        auto_remove=True,
        command=f"./tiles.py --dataset {DATASET_ID}",
        environment={"MAPBOX_TOKEN": SECRETS["MAPBOX_TOKEN"]},
    )
