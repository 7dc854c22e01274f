"""SlackNotifier in real DAG runs (`airflow dags test --use-executor`) against a local Slack stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx
import pytest
import requests

from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.notifications.slack import SlackNotifier
from tests.conftest import CANARY, AirflowStack, logged_messages
from tests.slack_standin import SlackStandIn


def run(stack: AirflowStack, slack: SlackStandIn, dag_id: str) -> tuple[int, float]:
    """Run the DAG (it fails on purpose); returns the exit code and the wall time."""
    slack.reset()
    started = time.monotonic()
    result = stack.dags_test(dag_id)
    output = result.stdout + result.stderr
    assert "DagRun" in output and "Traceback (most recent call last)" not in output.split("DagRun")[0], output[-4000:]
    assert stack.task_logs(dag_id), output[-4000:]
    return result.returncode, time.monotonic() - started


def api_messages(slack: SlackStandIn) -> list[dict]:
    return [m for m in slack.messages if m["path"] == "/api/chat.postMessage"]


@pytest.fixture(scope="module")
def failure_run(airflow_stack: AirflowStack, slack_standin: SlackStandIn) -> list[dict]:
    code, _ = run(airflow_stack, slack_standin, "slack_failure_e2e")
    assert code != 0  # the DAG run failed, as it should
    return list(slack_standin.messages)


def test_one_failure_message_after_the_last_try(failure_run: list[dict]) -> None:
    failures = [m for m in failure_run if m["path"] == "/api/chat.postMessage"]
    assert len(failures) == 1, "retries=1: no message for the first try, one for the final failure"
    body = failures[0]["body"]
    assert body["channel"] == "#dts-alerts" and body["icon_emoji"] == ":bus:"
    assert failures[0]["auth"] == "Bearer xoxb-test-token"
    text = body["text"]
    for expected in (
        ":red_circle: Task failed: slack_failure_e2e.boom",
        "DAG: slack_failure_e2e",
        "Task: boom",
        "Run: manual__",
        "Schedule: At 06:00",
        "Try: 2 of 2",
        "Duration: ",
        "Error: ValueError: upstream rejected the key ***",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert "CST" in text or "CDT" in text, "dates are shown in America/Chicago"
    assert "second line is not shown" not in text
    blocks = json.loads(body["blocks"]) if isinstance(body["blocks"], str) else body["blocks"]
    # What Slack shows when blocks are present: check every block, not only the fallback text.
    header, facts, error, actions = blocks
    assert header["text"]["text"] == "*:red_circle: Task failed: slack_failure_e2e.boom*"
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in facts["fields"]}
    assert fields["DAG"] == "slack_failure_e2e" and fields["Task"] == "boom" and fields["Try"] == "2 of 2"
    assert fields["Run"].startswith("manual__") and fields["Schedule"].startswith("At 06:00")
    assert error["text"]["text"] == "*Error*\n```ValueError: upstream rejected the key ***```"
    button = actions["elements"][0]
    assert button["text"]["text"] == "View Task Log" and button["url"] == text.split("Log: ")[1].split("\n")[0]


def test_canary_is_masked_in_the_message(failure_run: list[dict]) -> None:
    assert CANARY not in json.dumps(failure_run)


def test_log_link_resolves_in_the_api_server(failure_run: list[dict], airflow_stack: AirflowStack) -> None:
    text = next(m for m in failure_run if m["path"] == "/api/chat.postMessage")["body"]["text"]
    link = next(line for line in text.splitlines() if line.startswith("Log: ")).removeprefix("Log: ")
    assert link.startswith(airflow_stack.api_url + "/dags/slack_failure_e2e/runs/")
    parts = urlsplit(link)
    _, _, dag_id, _, run_id, _, task_id = parts.path.split("/")
    try_number = parts.query.removeprefix("try_number=")
    assert try_number == "2"
    assert httpx.get(link).status_code == 200  # the UI route
    logs = httpx.get(
        f"{airflow_stack.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        headers={"Accept": "application/json"},
    )
    assert logs.status_code == 200 and "upstream rejected the key ***" in logs.text


def test_success_message_through_the_webhook(failure_run: list[dict]) -> None:
    hooks = [m for m in failure_run if m["path"] == "/webhook/T000/B000/XXXX"]
    assert len(hooks) == 1
    assert hooks[0]["body"]["text"].startswith(":large_green_circle: Task succeeded: slack_failure_e2e.fine")


def test_team_drop_in_functions(airflow_stack: AirflowStack, slack_standin: SlackStandIn) -> None:
    code, _ = run(airflow_stack, slack_standin, "slack_critical_e2e")
    assert code != 0
    texts = [m["body"]["text"] for m in api_messages(slack_standin)]
    assert len(texts) == 2
    critical = next(t for t in texts if "boom" in t)
    assert critical.startswith("<!channel> :rotating_light: CRITICAL task failure: slack_critical_e2e.boom")
    assert any(t.startswith(":large_green_circle: Task succeeded: slack_critical_e2e.fine") for t in texts)


def test_dag_level_callback(airflow_stack: AirflowStack, slack_standin: SlackStandIn) -> None:
    code, _ = run(airflow_stack, slack_standin, "slack_dag_level_e2e")
    assert code != 0
    texts = [m["body"]["text"] for m in api_messages(slack_standin)]
    assert len(texts) == 1, texts
    assert texts[0].startswith(
        "<@U024BE7LH> <!subteam^S0614TZR7> :rotating_light: CRITICAL task failure: slack_dag_level_e2e"
    )


def test_environment_gating(airflow_stack: AirflowStack, slack_standin: SlackStandIn) -> None:
    code, _ = run(airflow_stack, slack_standin, "slack_gated_e2e")
    assert code != 0
    assert slack_standin.messages == []
    log = airflow_stack.task_logs("slack_gated_e2e")["boom"]
    assert "Slack failure alert skipped: ENVIRONMENT='production' is not one of ['staging']" in log


def test_slack_down_does_not_change_task_states_and_is_bounded(
    airflow_stack: AirflowStack, slack_standin: SlackStandIn
) -> None:
    code, seconds = run(airflow_stack, slack_standin, "slack_outage_e2e")
    assert code != 0  # boom failed, as it would have anyway
    logs = airflow_stack.task_logs("slack_outage_e2e")
    assert "Slack success alert not sent" in logs["fine"]
    assert "Slack failure alert not sent" in logs["boom"]
    assert seconds < 90


# -- Slack answering errors: logged with the cause, never raised, bounded -------------------


@pytest.fixture
def api_conn(slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    slack_standin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK", json.dumps(
        {"conn_type": "slack", "password": "xoxb-test-token", "extra": {"base_url": f"{slack_standin.url}/api/"}}
    ))  # fmt: skip


def webhook_conn(slack: SlackStandIn) -> str:
    """An incoming-webhook connection posting to the stand-in, as AIRFLOW_CONN_* JSON."""
    return json.dumps({"conn_type": "slackwebhook", "host": f"{slack.url}/webhook", "password": "T1/B1/X1"})


@pytest.fixture(params=["slack", "slackwebhook"])
def either_conn(
    request: pytest.FixtureRequest, api_conn: None, slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The `slack` connection as a Slack API token or as an incoming webhook: the notifier sends through both."""
    if request.param == "slackwebhook":
        monkeypatch.setenv("AIRFLOW_CONN_SLACK", webhook_conn(slack_standin))
    return str(request.param)


CONTEXT = {"dag_run": None, "dag": None, "run_id": "manual__x", "reason": "task_failure"}


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (("error", "invalid_auth"), "invalid_auth"),
        (("error", "channel_not_found"), "channel_not_found"),
        (("status", 500), "SlackApiError"),
        (("rate_limit", 60), "Retry-After 60s exceeds 5s"),
    ],
)
def test_slack_errors_are_logged_not_raised(
    api_conn: None, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture, fault: tuple, cause: str
) -> None:
    slack_standin.plan.append(fault)
    started = time.monotonic()
    SlackNotifier(kind="failure")(dict(CONTEXT))
    assert time.monotonic() - started < 5
    assert cause in capfd.readouterr().out


# the limit itself is still waited for; a 429 without a readable Retry-After (Slack always sends one) waits 1 s
@pytest.mark.parametrize(
    ("retry_after", "limit", "waited"), [(2, 5.0, 2), (1, 1.0, 1), (None, 5.0, 1), ("soon", 5.0, 1), (-3, 5.0, 0)]
)
def test_short_rate_limit_is_retried_once(
    either_conn: str, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture,
    retry_after: int | None, limit: float, waited: float,
) -> None:  # fmt: skip
    slack_standin.plan.append(("rate_limit", retry_after))
    SlackNotifier(kind="failure", max_retry_after=limit)(dict(CONTEXT))
    first, second = slack_standin.messages  # the 429, then the retry
    assert (first["fault"], second["fault"]) == (("rate_limit", retry_after), None)
    assert waited <= second["at"] - first["at"] < waited + 1, "the retry waited what the 429 asked for"
    sent = {"slack": "Slack failure alert sent to #airflow",
            "slackwebhook": "Slack failure alert sent through webhook connection 'slack'"}  # fmt: skip
    assert logged_messages(capfd.readouterr().out) == [sent[either_conn]]


def test_a_second_rate_limit_in_a_row_is_not_retried(
    either_conn: str, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture
) -> None:
    """One retry per alert: a failure callback does not keep waiting on Slack's limit."""
    slack_standin.plan.extend([("rate_limit", 0), ("rate_limit", 0)])
    SlackNotifier(kind="failure")(dict(CONTEXT))
    assert [m["fault"] for m in slack_standin.messages] == [("rate_limit", 0), ("rate_limit", 0)]
    out = capfd.readouterr().out  # the API's error text spans two lines: look for the line's start
    assert "Slack failure alert not sent (" in out and "alert sent" not in out, out


def test_long_rate_limit_is_given_up_at_once(
    either_conn: str, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture
) -> None:
    slack_standin.plan.append(("rate_limit", 60))
    started = time.monotonic()
    SlackNotifier(kind="failure")(dict(CONTEXT))
    assert time.monotonic() - started < 5 and len(slack_standin.messages) == 1
    assert logged_messages(capfd.readouterr().out) == [
        "Slack failure alert not sent (RuntimeError: Slack rate limit: Retry-After 60s exceeds 5s)"
    ]


def test_slow_slack_times_out(either_conn: str, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture) -> None:
    slack_standin.plan.extend([("slow", 5), ("slow", 5)])
    started = time.monotonic()
    SlackNotifier(kind="failure", timeout=1)(dict(CONTEXT))
    assert time.monotonic() - started < 4.5
    (message,) = logged_messages(capfd.readouterr().out)
    assert message.startswith("Slack failure alert not sent (") and "timed out" in message, message


def test_defaults_are_the_ones_readme_documents() -> None:
    notifier = SlackNotifier()
    assert (notifier.kind, notifier.slack_conn_id, notifier.timeout, notifier.max_retry_after) == (
        "failure", "slack", 10, 5,
    )  # fmt: skip


def test_api_payload_channel_icon_and_byline(
    api_conn: None, slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel: the notifier's (templated), else the connection's extra, else #airflow."""
    SlackNotifier(icon_emoji=":bus:", username="DTS Airflow")(sdk_context())
    monkeypatch.setenv("AIRFLOW_CONN_SLACK", json.dumps({"conn_type": "slack", "password": "xoxb-test-token",
        "extra": {"base_url": f"{slack_standin.url}/api/", "channel": "#from-the-connection"}}))  # fmt: skip
    SlackNotifier()(sdk_context())
    SlackNotifier(channel="#{{ dag.dag_id }}-alerts")(sdk_context())
    bodies = [m["body"] for m in slack_standin.messages]
    assert [b["channel"] for b in bodies] == ["#airflow", "#from-the-connection", "#etl_daily-alerts"]
    assert (bodies[0]["icon_emoji"], bodies[0]["username"]) == (":bus:", "DTS Airflow")
    assert "icon_emoji" not in bodies[1] and "username" not in bodies[1]
    text, blocks = SlackNotifier().build_message(sdk_context())
    assert bodies[1]["text"] == text and json.loads(json.dumps(bodies[1]["blocks"])) == blocks


# providers-slack warns that Slack apps' webhooks ignore both; the team's legacy webhook honours them
@pytest.mark.filterwarnings("ignore:You cannot override the default channel")
def test_webhook_payload_icon_and_byline(slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    slack_standin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", webhook_conn(slack_standin))
    SlackNotifier(slack_conn_id="alerts_hook", icon_emoji=":bus:", username="DTS Airflow")(sdk_context())
    SlackNotifier(slack_conn_id="alerts_hook")(sdk_context())
    first, second = (m["body"] for m in slack_standin.messages)
    assert (first["icon_emoji"], first["username"]) == (":bus:", "DTS Airflow")
    assert "icon_emoji" not in second and "username" not in second
    assert second["text"].startswith(":red_circle: Task failed: etl_daily.load\n")


@pytest.mark.parametrize(("environment", "sent"), [("production", 1), ("staging", 0), ("", 0), (None, 0)])
def test_environments_gate_the_alert(
    api_conn: None, slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture, environment: str | None, sent: int,
) -> None:  # fmt: skip
    if environment is None:  # not set at all: read as ''
        monkeypatch.delenv("ENVIRONMENT", raising=False)
    else:
        monkeypatch.setenv("ENVIRONMENT", environment)
    SlackNotifier(kind="success", environments=["production"])(sdk_context())
    assert len(slack_standin.messages) == sent
    skipped = f"Slack success alert skipped: ENVIRONMENT={environment or ''!r} is not one of ['production']"
    assert logged_messages(capfd.readouterr().out) == ["Slack success alert sent to #airflow" if sent else skipped]


def test_bad_arguments_fail_at_dag_parse() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        SlackNotifier(kind="urgent")
    with pytest.raises(ValueError, match="must be a list") as err:
        SlackNotifier(environments="production")
    assert str(err.value) == "SlackNotifier environments must be a list, e.g. ['production'], not a string"
    with pytest.raises(Exception, match="Nowhere/City"):
        SlackNotifier(timezone="Nowhere/City")


# -- the team's Airflow 2 'slack' connection and the installation-wide gating of the drop-ins --


@pytest.mark.parametrize(
    ("environment", "setting", "sent"),
    [("production", None, True), ("staging", None, False), ("staging", "production, staging", True),
     ("production", "production,staging", True), ("anything", "*", True)],
)  # fmt: skip
def test_drop_ins_post_through_the_teams_http_webhook_connection(
    slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch, environment: str, setting: str | None, sent: bool
) -> None:
    from airflow_dts_provider.notifications.slack import task_fail_slack_alert

    slack_standin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK", json.dumps(
        {"conn_type": "http", "host": f"{slack_standin.url}/webhook", "password": "T000/B000/XXXX"}
    ))  # fmt: skip
    monkeypatch.setenv("ENVIRONMENT", environment)
    if setting is None:
        monkeypatch.delenv("AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS", setting)
    task_fail_slack_alert(dict(CONTEXT))
    posted = [m for m in slack_standin.messages if m["path"] == "/webhook/T000/B000/XXXX"]
    assert len(posted) == (1 if sent else 0)
    assert len(slack_standin.messages) == len(posted)


# -- the message itself, from the task SDK's own objects (fast) ------------------------------
# The context is put together here from the SDK's DAG, operator, RuntimeTaskInstance and DagRun
# models, as the task runner does; the real runs above prove it matches what Airflow passes.

RUN_ID = "scheduled__2026-11-27T12:00:00+00:00"


def sdk_context(*, exception: object = None, dag_id: str = "etl_daily", schedule: str | None = "0 6 * * *",
                ti_key: str = "ti", task: bool = True) -> dict[str, object]:  # fmt: skip
    import uuid

    import pendulum
    from airflow.sdk import DAG
    from airflow.sdk.api.datamodels._generated import DagRun
    from airflow.sdk.bases.operator import BaseOperator
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    with DAG(dag_id, schedule=schedule, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        operator = BaseOperator(task_id="load", retries=2)
    dag_run = DagRun.model_construct(
        dag_id=dag_id, run_id=RUN_ID, logical_date=pendulum.datetime(2026, 11, 27, 12),
        run_after=pendulum.datetime(2026, 11, 27, 12), start_date=pendulum.datetime(2026, 11, 27, 12, 0, 1),
        end_date=None, data_interval_start=None,
    )  # fmt: skip
    context: dict[str, object] = {"dag": dag, "dag_run": dag_run, "run_id": RUN_ID, "exception": exception}
    if task:
        context[ti_key] = RuntimeTaskInstance.model_construct(
            id=uuid.uuid4(), task=operator, dag_id=dag_id, task_id="load", run_id=RUN_ID, try_number=2,
            map_index=-1, start_date=pendulum.datetime(2026, 11, 27, 12, 0, 5),
            end_date=pendulum.datetime(2026, 11, 27, 13, 2, 9),
        )  # fmt: skip
    return context


LOG_PATH = "/dags/etl_daily/runs/scheduled__2026-11-27T12%3A00%3A00%2B00%3A00/tasks/load?try_number=2"


@pytest.mark.parametrize("ti_key", ["ti", "task_instance"])
def test_failure_message_text_and_every_block(ti_key: str) -> None:
    text, blocks = SlackNotifier(kind="failure").build_message(
        sdk_context(exception=ValueError("source API answered 503\nsecond line not shown"), ti_key=ti_key)
    )
    facts = [
        ("DAG", "etl_daily"), ("Task", "load"), ("Run", RUN_ID), ("Logical date", "2026-11-27 06:00:00 CST"),
        ("Schedule", "At 06:00 (0 6 * * *, UTC)"), ("Duration", "1h 2m 4s"), ("Try", "2 of 3"),
    ]  # fmt: skip
    log_url = f"http://localhost:8080{LOG_PATH}"
    assert text == "\n".join(
        [":red_circle: Task failed: etl_daily.load", *(f"{k}: {v}" for k, v in facts),
         "Error: ValueError: source API answered 503", f"Log: {log_url}"]
    )  # fmt: skip
    assert blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*:red_circle: Task failed: etl_daily.load*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Error*\n```ValueError: source API answered 503```"}},
        {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "View Task Log"}, "url": log_url}]},
    ]  # fmt: skip


def test_critical_mentions_and_success_without_error() -> None:
    critical, _ = SlackNotifier(kind="critical", mentions=["U024BE7LH", "S0614TZR7", "<!here>"]).build_message(
        sdk_context(exception="RuntimeError: boom\nmore")
    )
    assert critical.splitlines()[0] == (
        "<@U024BE7LH> <!subteam^S0614TZR7> <!here> :rotating_light: CRITICAL task failure: etl_daily.load"
    )
    assert "Error: RuntimeError: boom" in critical.splitlines() and "more" not in critical
    assert SlackNotifier(kind="critical", mentions=[]).build_message(sdk_context())[0].startswith(":rotating_light:")
    assert SlackNotifier(kind="critical").build_message(sdk_context())[0].startswith("<!channel> :rotating_light:")
    success, blocks = SlackNotifier(kind="success", mentions=["U1"]).build_message(sdk_context())
    assert success.startswith(":large_green_circle: Task succeeded: etl_daily.load\n")
    assert "Error" not in success and [b["type"] for b in blocks] == ["section", "section", "actions"]


def test_dag_level_message_without_a_task_or_schedule() -> None:
    context = sdk_context(task=False, schedule=None)
    context["reason"] = "task_failure"
    dag_run: Any = context["dag_run"]
    dag_run.end_date = dag_run.start_date.add(seconds=30)
    text, blocks = SlackNotifier(kind="failure").build_message(context)
    assert text.splitlines() == [
        ":red_circle: Task failed: etl_daily", "DAG: etl_daily", f"Run: {RUN_ID}",
        "Logical date: 2026-11-27 06:00:00 CST", "Schedule: No schedule (manual runs only)", "Duration: 0m 30s",
        "Error: task_failure",
    ]  # fmt: skip
    assert [b["type"] for b in blocks] == ["section", "section", "section"]  # no task: no log button


def test_run_after_or_data_interval_when_there_is_no_logical_date() -> None:
    context = sdk_context(schedule="@daily")
    dag_run: Any = context["dag_run"]
    dag_run.logical_date = None
    lines = SlackNotifier().build_message(context)[0].splitlines()
    assert "Run after: 2026-11-27 06:00:00 CST" in lines and "Schedule: At 00:00 (0 0 * * *, UTC)" in lines
    dag_run.data_interval_start = dag_run.run_after.subtract(days=1)
    assert "Data interval start: 2026-11-26 12:00:00 UTC" in SlackNotifier(timezone="UTC").build_message(context)[0]


def test_everything_from_the_task_is_escaped_and_masked(clean_masker: Callable[[str], str]) -> None:
    """Slack reads <!channel> and <url|text> anywhere: a DAG id or an error must not ping or phish."""
    from airflow.sdk.log import mask_secret

    mask_secret("s3cr3t-in-the-error")
    error = RuntimeError("a <!channel> & <https://evil.example|click> ``` s3cr3t-in-the-error")
    context = sdk_context(exception=error)
    dag_run: Any = context["dag_run"]
    dag_run.run_id = "manual__<!here>"  # run ids are free text (a trigger through the REST API names them)
    text, blocks = SlackNotifier().build_message(context)
    assert "Run: manual__&lt;!here&gt;" in text.splitlines()
    escaped = "RuntimeError: a &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; ``` ***"
    assert f"Error: {escaped}" in text.splitlines()
    assert blocks[2]["text"]["text"] == "*Error*\n```" + escaped.replace("`", "\u02cb") + "```"
    assert "s3cr3t" not in json.dumps(blocks) and "<!" not in json.dumps(blocks)


def test_a_long_error_is_cut_with_an_ellipsis() -> None:
    text = SlackNotifier().build_message(sdk_context(exception=ValueError("x" * 400)))[0]
    error = next(line for line in text.splitlines() if line.startswith("Error: "))
    assert error == "Error: ValueError: " + "x" * (300 - len("ValueError: ") - 1) + "…"
    at_the_limit = "x" * (300 - len("ValueError: "))
    text = SlackNotifier().build_message(sdk_context(exception=ValueError(at_the_limit)))[0]
    assert f"Error: ValueError: {at_the_limit}" in text.splitlines(), "300 characters are not cut"
    text = SlackNotifier().build_message(sdk_context(exception=ValueError()))[0]
    assert "Error: ValueError" in text.splitlines()


def test_log_link_follows_airflow_base_url_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow-apiserver:8080/")
    notifier = SlackNotifier(airflow_base_url="https://airflow.example.org/")
    text, blocks = notifier.build_message(sdk_context())
    assert f"Log: https://airflow.example.org{LOG_PATH}" in text.splitlines()
    assert blocks[-1]["elements"][0]["url"] == f"https://airflow.example.org{LOG_PATH}"


def test_ids_and_dates_from_the_context_when_there_is_no_run() -> None:
    """Callbacks may get a context without a DagRun (or with dates as text): the message still says what ran."""
    context = sdk_context()
    context |= {"dag_run": None, "run_id": "manual__2026", "logical_date": "2026-11-27T18:30:00+00:00"}
    lines = SlackNotifier().build_message(context)[0].splitlines()
    assert lines[:5] == [
        ":red_circle: Task failed: etl_daily.load", "DAG: etl_daily", "Task: load", "Run: manual__2026",
        "Logical date: 2026-11-27 12:30:00 CST",
    ]  # fmt: skip
    assert SlackNotifier().build_message({})[0].splitlines()[:2] == [":red_circle: Task failed: ?", "DAG: ?"]
    assert "Run: ?" in SlackNotifier().build_message({})[0].splitlines()


def test_the_contexts_logical_date_wins_and_tries_without_a_known_total() -> None:
    context = sdk_context()
    context["logical_date"] = context["dag_run"].logical_date.add(hours=1)  # type: ignore[attr-defined]
    ti: Any = context["ti"]
    ti.task = None  # a task instance whose operator is not at hand: its retries are unknown
    lines = SlackNotifier().build_message(context)[0].splitlines()
    assert "Logical date: 2026-11-27 07:00:00 CST" in lines and "Try: 2" in lines


def scheduler_side_dag() -> Any:
    """What `airflow dags test` hands DAG-level callbacks: the serialized DAG (no template environment)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(sdk_context()["dag"]))


def test_a_scheduler_side_dag_gives_its_timetables_own_words() -> None:
    lines = SlackNotifier().build_message({"dag": scheduler_side_dag(), "run_id": "r"})[0].splitlines()
    assert "Schedule: At 06:00" in lines


def test_a_dag_without_a_template_environment_still_renders_the_channel(
    api_conn: None, slack_standin: SlackStandIn
) -> None:
    dag = scheduler_side_dag()
    assert not hasattr(dag, "get_template_env")
    SlackNotifier(channel="#alerts-{{ run_id }}")({"dag": dag, "run_id": "manual__9", "reason": "task_failure"})
    (message,) = slack_standin.messages
    assert message["body"]["channel"] == "#alerts-manual__9"


def test_api_and_webhook_sends_are_logged_and_carry_the_blocks(
    api_conn: None, slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", webhook_conn(slack_standin))
    SlackNotifier(kind="critical", mentions=[])(sdk_context())
    SlackNotifier(kind="success", slack_conn_id="alerts_hook")(sdk_context())
    api, webhook = slack_standin.messages
    assert (api["path"], webhook["path"]) == ("/api/chat.postMessage", "/webhook/T1/B1/X1")
    assert webhook["body"]["blocks"] == SlackNotifier(kind="success").build_message(sdk_context())[1]
    assert logged_messages(capfd.readouterr().out) == [
        "Slack critical alert sent to #airflow",
        "Slack success alert sent through webhook connection 'alerts_hook'",
    ]


@pytest.mark.parametrize(
    ("drop_in", "header"),
    [
        ("task_fail_slack_alert", ":red_circle: Task failed: etl_daily.load"),
        ("task_fail_slack_alert_critical", "<!channel> :rotating_light: CRITICAL task failure: etl_daily.load"),
        ("task_success_slack_alert", ":large_green_circle: Task succeeded: etl_daily.load"),
    ],
)
def test_each_drop_in_sends_its_kind_where_the_setting_allows(
    api_conn: None, slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch, drop_in: str, header: str
) -> None:
    import airflow_dts_provider.notifications.slack as slack

    monkeypatch.setenv("AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS", "production")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    getattr(slack, drop_in)(sdk_context())
    assert slack_standin.messages == []
    monkeypatch.setenv("ENVIRONMENT", "production")
    getattr(slack, drop_in)(sdk_context())
    (message,) = slack_standin.messages
    assert message["body"]["text"].splitlines()[0] == header


def test_schedule_words_use_the_24_hour_clock_and_the_dags_timezone() -> None:
    import pendulum
    from airflow.sdk import DAG

    dag = DAG("evening", schedule="30 18 * * 1-5", start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"))
    lines = SlackNotifier().build_message({"dag": dag, "run_id": "r"})[0].splitlines()
    assert "Schedule: At 18:30, Monday through Friday (30 18 * * 1-5, America/Chicago)" in lines


def test_no_schedule_line_for_a_dag_that_says_nothing_about_its_schedule() -> None:
    from types import SimpleNamespace

    lines = SlackNotifier().build_message({"dag": SimpleNamespace(dag_id="odd"), "run_id": "r"})[0].splitlines()
    assert not any(line.startswith("Schedule:") for line in lines)


def test_the_dags_own_macros_render_the_channel(api_conn: None, slack_standin: SlackStandIn) -> None:
    """A task-side DAG renders the channel in its own template environment (user_defined_macros)."""
    import pendulum
    from airflow.sdk import DAG

    context = sdk_context()
    context["dag"] = DAG(
        "etl_daily", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
        user_defined_macros={"alert_channel": "#etl-team"},
    )  # fmt: skip
    SlackNotifier(channel="{{ alert_channel }}")(context)
    (message,) = slack_standin.messages
    assert message["body"]["channel"] == "#etl-team"


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [(0, 0, "0m 0s"), (10, 0, "0m 0s"), (0, 3600, "1h 0m 0s"), (0, 59, "0m 59s")],  # an end before the start: 0 s
)
def test_durations(start: int, end: int, shown: str) -> None:
    import pendulum

    context = sdk_context()
    ti: Any = context["ti"]
    noon = pendulum.datetime(2026, 11, 27, 12)
    ti.start_date, ti.end_date = noon.add(seconds=start), noon.add(seconds=end)
    assert f"Duration: {shown}" in SlackNotifier().build_message(context)[0].splitlines()


def test_a_task_still_running_is_timed_until_now() -> None:
    import re

    import pendulum

    context = sdk_context()
    ti: Any = context["ti"]
    ti.start_date, ti.end_date = pendulum.now("UTC").subtract(seconds=65), None
    (line,) = (x for x in SlackNotifier().build_message(context)[0].splitlines() if x.startswith("Duration:"))
    assert re.fullmatch(r"Duration: 1m (5|6)s", line), line  # 6: the second may turn while the message is built


def test_a_blank_error_text_falls_back_to_the_reason() -> None:
    context = sdk_context(exception="  \n  ")  # Airflow passes some failures (e.g. a lost task) as text
    context["reason"] = "task_failure"
    lines = SlackNotifier().build_message(context)[0].splitlines()
    assert "Error: task_failure" in lines


def test_a_cron_the_describer_cannot_read_is_shown_as_written() -> None:
    from types import SimpleNamespace

    timetable = SimpleNamespace(description=None, expression="0 6 * * * extra-field")  # and no timezone: UTC
    lines = SlackNotifier().build_message({"dag": SimpleNamespace(dag_id="odd", timetable=timetable), "run_id": "r"})
    assert "Schedule: 0 6 * * * extra-field (0 6 * * * extra-field, UTC)" in lines[0].splitlines()


def test_a_token_url_encoded_in_an_exceptions_url_does_not_reach_slack(
    api_conn: None, slack_standin: SlackStandIn, devvault: DevVaultServer, make_client: Any,
    clean_masker: Callable[[str], str],
) -> None:  # fmt: skip
    """Issue 27, finding 4: ``requests`` quotes the URL of a failed request, token and all, URL-encoded."""
    token = make_client(vault="Team Vault").resolve("op://Team Vault/Socrata Encoded/appToken")
    response = requests.get(f"{devvault.url}/v1/no-such-endpoint", params={"$$app_token": token}, timeout=10)
    with pytest.raises(requests.HTTPError) as raised:
        response.raise_for_status()
    assert quote_plus(token) in str(raised.value) and token not in str(raised.value), "what requests writes"
    SlackNotifier(kind="failure")({**CONTEXT, "exception": raised.value})
    (sent,) = api_messages(slack_standin)
    body = json.dumps(sent["body"])
    assert "HTTPError" in body and "app_token=***" in body, body
    assert "4e1a" not in body, body
