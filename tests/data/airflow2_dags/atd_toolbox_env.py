# The Docker DAG the migration test runs for real: its container prints a digest of each variable it got
import os
from datetime import datetime

from airflow.models import DAG
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")
TOOLBOX_IMAGE = os.getenv("ATD_TOOLBOX_IMAGE", "atddocker/atd-toolbox:production")
NAMES = "KNACK_APP_ID KNACK_API_KEY BUCKET_NAME ACCESS_KEY SO_TOKEN CANARY"
PRINT_DIGESTS = (
    f"for name in {NAMES}; do "
    'printf "digest %s=" "$name"; eval "printf %s \\"\\$$name\\"" | sha256sum | cut -c1-64; done'
)

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack AMD Data Tracker", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.appId"},
    "KNACK_API_KEY": {"opitem": "Knack AMD Data Tracker", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.apiKey"},
    "BUCKET_NAME": {"opitem": "Crash Data Bucket", "opfield": f"{DEPLOYMENT_ENVIRONMENT}.bucket"},
    "ACCESS_KEY": {"opitem": "Crash Data Bucket", "opfield": ".accessKeyId"},
}
REQUIRED_SECRETS.update(
    {
        "SO_TOKEN": {"opitem": "Socrata Key ID, Secret, and Token", "opfield": "socrata.appToken"},
        "CANARY": {"opitem": "Toolbox Canary", "opfield": ".secret"},
    }
)

with DAG(
    dag_id="atd_toolbox_env",
    default_args={"owner": "airflow", "start_date": datetime(2024, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval=None,
    tags=["repo:atd-toolbox"],
    catchup=False,
) as dag:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)

    DockerOperator(
        task_id="print_env_digests",
        image=TOOLBOX_IMAGE,
        auto_remove=True,
        command=["sh", "-c", PRINT_DIGESTS],
        environment=env_vars,
        mount_tmp_dir=False,
    )
