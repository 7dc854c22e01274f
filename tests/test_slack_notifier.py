"""SlackNotifier in real DAG runs (`airflow dags test --use-executor`) against a local Slack stand-in."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_dts_provider.notifications.slack import SlackNotifier
from tests.conftest import CANARY, AirflowStack
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


def test_short_rate_limit_is_retried_once(api_conn: None, slack_standin: SlackStandIn) -> None:
    slack_standin.plan.append(("rate_limit", 1))
    SlackNotifier(kind="failure")(dict(CONTEXT))
    first, second = slack_standin.messages  # the 429, then the retry
    assert (first["fault"], second["fault"]) == (("rate_limit", 1), None)
    assert second["at"] - first["at"] >= 1.0, "the retry waited the Retry-After the 429 asked for"


def test_slow_slack_times_out(api_conn: None, slack_standin: SlackStandIn, capfd: pytest.CaptureFixture) -> None:
    slack_standin.plan.extend([("slow", 5), ("slow", 5)])
    started = time.monotonic()
    SlackNotifier(kind="failure", timeout=1)(dict(CONTEXT))
    assert time.monotonic() - started < 4.5
    assert "alert not sent" in capfd.readouterr().out


def test_bad_arguments_fail_at_dag_parse() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        SlackNotifier(kind="urgent")
    with pytest.raises(ValueError, match="must be a list"):
        SlackNotifier(environments="production")
    with pytest.raises(Exception, match="Nowhere/City"):
        SlackNotifier(timezone="Nowhere/City")


# -- the team's Airflow 2 'slack' connection and the installation-wide gating of the drop-ins --


@pytest.mark.parametrize(
    ("environment", "setting", "sent"),
    [("production", None, True), ("staging", None, False), ("staging", "production, staging", True),
     ("anything", "*", True)],
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
