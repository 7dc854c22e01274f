# The dag_id is computed, and the DAG has no repo tag
from airflow.sdk import DAG

PREFIX = "atd"


with DAG(
    dag_id=f"{PREFIX}_computed_id",
    schedule=None,
    default_args={"owner": "airflow"},
) as dag:
    pass
