"""DAGs for tests/test_slack_notifier.py: real task failures and successes alerting a Slack stand-in."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Variable, dag, task

from airflow_dts_provider.notifications.slack import (
    SlackNotifier,
    task_fail_slack_alert_critical,
    task_success_slack_alert,
)

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@task
def boom() -> None:
    # The canary comes from 1Password (secrets backend), so it is registered with the masker.
    raise ValueError(f"upstream rejected the key {Variable.get('canary_var')}\nsecond line is not shown")


@task
def fine() -> str:
    return "ok"


@dag(
    schedule="0 6 * * *", start_date=START, catchup=False, tags=["tests"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0),
                  "on_failure_callback": [SlackNotifier(kind="failure", icon_emoji=":bus:")]},
)  # fmt: skip
def slack_failure_e2e() -> None:
    boom()
    fine.override(on_success_callback=[SlackNotifier(kind="success", slack_conn_id="slack_webhook")])()


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"],
     default_args={"on_failure_callback": task_fail_slack_alert_critical,
                   "on_success_callback": task_success_slack_alert})  # fmt: skip
def slack_critical_e2e() -> None:
    boom()
    fine()


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"],
     default_args={"on_failure_callback": [SlackNotifier(kind="failure", environments=["staging"])]})  # fmt: skip
def slack_gated_e2e() -> None:
    boom()


DOWN = {"slack_conn_id": "slack_down", "timeout": 2}


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"],
     default_args={"on_success_callback": [SlackNotifier(kind="success", **DOWN)],
                   "on_failure_callback": [SlackNotifier(kind="failure", **DOWN)]})  # fmt: skip
def slack_outage_e2e() -> None:
    fine()
    boom()


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"],
     on_failure_callback=[SlackNotifier(kind="critical", mentions=["U024BE7LH", "S0614TZR7"])])  # fmt: skip
def slack_dag_level_e2e() -> None:
    boom()


slack_failure_e2e()
slack_critical_e2e()
slack_gated_e2e()
slack_outage_e2e()
slack_dag_level_e2e()
