from airflow.contrib.operators.slack_webhook_operator import SlackWebhookOperator
from airflow.hooks.base_hook import BaseHook

SLACK_CONN_ID = "slack"


def _send(context, message):
    slack_webhook_token = BaseHook.get_connection(SLACK_CONN_ID).password
    alert = SlackWebhookOperator(
        task_id="slack_alert",
        http_conn_id=SLACK_CONN_ID,
        webhook_token=slack_webhook_token,
        message=message,
        username="airflow",
    )
    return alert.execute(context=context)


def task_fail_slack_alert(context):
    ti = context.get("task_instance")
    return _send(context, f":red_circle: Task Failed: {ti.dag_id}.{ti.task_id} <{ti.log_url}|log>")


def task_fail_slack_alert_critical(context):
    ti = context.get("task_instance")
    return _send(context, f"<!channel> :rotating_light: Task Failed: {ti.dag_id}.{ti.task_id} <{ti.log_url}|log>")


def task_success_slack_alert(context):
    ti = context.get("task_instance")
    return _send(context, f":large_green_circle: Task Succeeded: {ti.dag_id}.{ti.task_id}")
