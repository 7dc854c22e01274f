"""Slack alerts: failure, critical failure and success, as notifiers or with the team's function names.

Alerts go to the ``slack`` connection (Slack API token or incoming webhook) and only where the
``ENVIRONMENT`` variable allows (the team's drop-ins: production only).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_dts_provider.notifications.slack import SlackNotifier, task_fail_slack_alert


@dag(
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    tags=["example", "slack", "repo:airflow-dts-provider"],
    default_args={"on_failure_callback": task_fail_slack_alert, "retries": 1},  # an old DAG: only the import changed
    on_failure_callback=[SlackNotifier(kind="critical", mentions=["<!here>"], environments=["production"])],
)
def example_slack_alerts() -> None:
    @task(on_success_callback=[SlackNotifier(kind="success", environments=["production"], icon_emoji=":bus:")])
    def publish() -> None:
        print("published")

    publish()


example_slack_alerts()
