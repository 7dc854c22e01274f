# A top-level lookup of a Variable that does not exist: the import error and the lookup are on line 8
from airflow.sdk import DAG, Variable

DATASET = "x"


# the lookup
SETTINGS = Variable.get("atd_lookup_line_settings_that_do_not_exist")

with DAG(dag_id="atd_lookup_line", schedule=None, tags=["repo:atd-lookup"], default_args={"owner": "airflow"}) as dag:
    pass
