from datetime import datetime

from airflow.decorators import dag
from airflow.models import DagRun, TaskInstance
from airflow.operators.docker_operator import DockerOperator

from utils.onepassword import get_env_vars_task
from utils.slack_operator import task_fail_slack_alert, task_success_slack_alert

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack Signal Timing", "opfield": "production.appId"},
    "KNACK_API_KEY": {"opitem": "Knack Signal Timing", "opfield": "production.apiKey"},
}


@dag(
    dag_id="atd_signal_timing",
    schedule_interval="0 10 * * 1",
    start_date=datetime(2024, 1, 1),
    default_args={"owner": "airflow", "on_failure_callback": task_fail_slack_alert},
    tags=["repo:atd-signal-timing"],
    catchup=False,
)
def signal_timing():
    env_vars = get_env_vars_task(REQUIRED_SECRETS)
    DockerOperator(
        task_id="timing_report",
        image="atddocker/atd-signal-timing:production",
        auto_remove=True,
        command="./report.py",
        environment=env_vars,
        tty=True,
        on_success_callback=task_success_slack_alert,
    )


signal_timing()
