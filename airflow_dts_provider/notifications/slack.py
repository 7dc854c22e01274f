"""SlackNotifier: failure, critical-failure and success alerts that tell the on-call person what broke.

Sends through providers-slack's hooks: ``chat.postMessage`` for a Slack API connection (type
``slack``) or an incoming webhook (type ``slackwebhook``). A Slack problem is logged, never raised:
an alert must not fail, hang or endlessly retry the task it reports on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseHook, BaseNotifier

if TYPE_CHECKING:
    from slack_sdk.http_retry import RetryHandler

KINDS = {
    "failure": (":red_circle:", "Task failed"),
    "critical": (":rotating_light:", "CRITICAL task failure"),
    "success": (":large_green_circle:", "Task succeeded"),
}
DEFAULT_TIMEZONE = "America/Chicago"
#: Connection types posted to as incoming webhooks. ``http``/``https``: the team's Airflow 2 ``slack``
#: connection (type HTTP, host ``https://hooks.slack.com/services``, the webhook token as password).
WEBHOOK_CONN_TYPES = {"slackwebhook", "http", "https"}
MAX_EXCEPTION_CHARS = 300


class SlackNotifier(BaseNotifier):
    """
    Post an Airflow alert to Slack.

    :param kind: ``"failure"``, ``"critical"`` (adds mentions) or ``"success"``.
    :param slack_conn_id: a ``slack`` (API token; ``chat.postMessage``) or ``slackwebhook`` connection.
    :param channel: channel for API connections (default: the connection's extra ``channel``, else
        ``#airflow``). Webhooks post to the channel they were created for.
    :param mentions: who a critical alert pings: Slack user ids (``U...``), group ids (``S...``) or
        special mentions; default ``<!channel>``.
    :param environments: send only when the ``ENVIRONMENT`` variable is one of these (e.g.
        ``("production",)``); ``None`` sends everywhere. Skips are logged.
    :param timezone: timezone for dates in the message.
    :param airflow_base_url: base of the log link; default Airflow's ``[api] base_url``.
    :param icon_emoji: optional per-DAG icon (``":bus:"``); ``username``: optional byline.
    :param timeout: seconds per Slack request. ``max_retry_after``: a 429 asking to wait at most this long
        is retried once; longer waits are given up on (logged).
    """

    template_fields: Sequence[str] = ("channel",)

    def __init__(
        self,
        *,
        kind: str = "failure",
        slack_conn_id: str = "slack",
        channel: str | None = None,
        mentions: Sequence[str] | None = None,
        environments: Sequence[str] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        airflow_base_url: str | None = None,
        icon_emoji: str | None = None,
        username: str | None = None,
        timeout: int = 10,
        max_retry_after: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"SlackNotifier kind must be one of {sorted(KINDS)}, got {kind!r}")
        if isinstance(environments, str):
            raise ValueError("SlackNotifier environments must be a list, e.g. ['production'], not a string")
        pendulum.timezone(timezone)  # an unknown zone fails at DAG parse, not in the callback
        self.kind = kind
        self.slack_conn_id = slack_conn_id
        self.channel = channel
        self.mentions = list(mentions) if mentions is not None else ["<!channel>"]
        self.environments = list(environments) if environments is not None else None
        self.timezone = timezone
        self.airflow_base_url = airflow_base_url
        self.icon_emoji = icon_emoji
        self.username = username
        self.timeout = timeout
        self.max_retry_after = max_retry_after

    # ------------------------------------------------------------------ BaseNotifier
    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render ``channel``; copes with the scheduler-side DAG that `airflow dags test` passes to DAG
        callbacks (it has no template environment, which makes BaseNotifier raise)."""
        dag = context.get("dag")
        if jinja_env is None and dag is not None and not hasattr(dag, "get_template_env"):
            jinja_env = self.get_template_env(dag=None)
        super().render_template_fields(context, jinja_env=jinja_env)

    def notify(self, context: Any) -> None:
        environment = os.environ.get("ENVIRONMENT", "")
        if self.environments is not None and environment not in self.environments:
            self.log.info(
                "Slack %s alert skipped: ENVIRONMENT=%r is not one of %s", self.kind, environment, self.environments
            )
            return
        try:
            text, blocks = self.build_message(context)
            self._send(text, blocks)
        except Exception as err:  # an alert must never fail the task it reports on
            self.log.error("Slack %s alert not sent (%s: %s)", self.kind, type(err).__name__, _redact(str(err)))

    # ------------------------------------------------------------------ message
    def build_message(self, context: Any) -> tuple[str, list[dict[str, Any]]]:
        """Plain-text fallback and Block Kit blocks for this context."""
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        dag_id = str(getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "?"))
        task_id = getattr(ti, "task_id", None)
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
        emoji, title = KINDS[self.kind]
        subject = f"{dag_id}.{task_id}" if task_id else dag_id

        facts: list[tuple[str, str]] = [("DAG", dag_id)]
        if task_id:
            facts.append(("Task", task_id))
        facts.append(("Run", str(run_id)))
        when = context.get("logical_date") or getattr(dag_run, "logical_date", None)
        label = "Logical date"
        if when is None:
            when = getattr(dag_run, "data_interval_start", None) or getattr(dag_run, "run_after", None)
            label = "Data interval start" if getattr(dag_run, "data_interval_start", None) else "Run after"
        if when is not None:
            facts.append((label, self._format_time(when)))
        schedule = _schedule_in_words(dag)
        if schedule:
            facts.append(("Schedule", schedule))
        duration = _duration(ti, dag_run)
        if duration:
            facts.append(("Duration", duration))
        if ti is not None and getattr(ti, "try_number", None):
            retries = getattr(getattr(ti, "task", None), "retries", None)
            total = f" of {int(retries) + 1}" if isinstance(retries, int) else ""
            facts.append(("Try", f"{ti.try_number}{total}"))

        problem = _exception_summary(context.get("exception")) or _redact(str(context.get("reason") or ""))
        log_url = self._log_url(ti)

        # Everything below that came from the task (ids, dates, the error) is escaped: Slack reads
        # <!channel>, <@U123> and <url|text> in any text, so a message could ping or phish.
        facts = [(k, slack_escape(v)) for k, v in facts]
        problem = slack_escape(problem)
        header = f"{emoji} {title}: {slack_escape(subject)}"
        if self.kind == "critical" and self.mentions:
            header = f"{' '.join(_mention(m) for m in self.mentions)} {header}"
        lines = [header, *(f"{k}: {v}" for k, v in facts)]
        if problem:
            lines.append(f"Error: {problem}")
        if log_url:
            lines.append(f"Log: {slack_escape(log_url)}")
        text = "\n".join(lines)

        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{header}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts[:10]]},
        ]
        if problem:
            code = problem.replace("`", "\u02cb")  # a ``` in the error must not close its code block
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{code}```"}})
        if log_url:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "text": {"type": "plain_text", "text": "View Task Log"}, "url": log_url}
                    ],
                }
            )
        return text, blocks

    def _format_time(self, value: Any) -> str:
        moment = pendulum.instance(value) if isinstance(value, datetime) else pendulum.parse(str(value))
        return moment.in_timezone(self.timezone).format("YYYY-MM-DD HH:mm:ss zz")  # type: ignore[union-attr]

    def _log_url(self, ti: Any) -> str | None:
        if ti is None:
            return None
        try:
            url: str = ti.log_url
        except Exception:
            return None
        if self.airflow_base_url:
            from airflow.sdk.configuration import conf

            configured = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
            url = self.airflow_base_url.rstrip("/") + url[len(configured) :]
        return url

    # ------------------------------------------------------------------ sending
    def _send(self, text: str, blocks: list[dict[str, Any]]) -> None:
        from airflow_dts_provider.notifications._slack_retry import ShortRateLimitRetry, retry_handlers

        rate_limit = ShortRateLimitRetry(self.max_retry_after)
        retry = retry_handlers(rate_limit)
        conn = BaseHook.get_connection(self.slack_conn_id)
        try:
            if conn.conn_type in WEBHOOK_CONN_TYPES:
                self._send_to_webhook(text, blocks, retry)
            else:
                self._send_to_api(text, blocks, conn.extra_dejson.get("channel"), retry)
        except Exception as err:
            if rate_limit.refused_wait is None:
                raise
            raise RuntimeError(
                f"Slack rate limit: Retry-After {rate_limit.refused_wait:g}s exceeds {self.max_retry_after:g}s"
            ) from err

    def _send_to_webhook(self, text: str, blocks: list[dict[str, Any]], retry: list[RetryHandler]) -> None:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        webhook = SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id, timeout=self.timeout, retry_handlers=retry)
        extra: dict[str, Any] = {k: v for k, v in (("icon_emoji", self.icon_emoji), ("username", self.username)) if v}
        webhook.send(text=text, blocks=blocks, **extra)
        self.log.info("Slack %s alert sent through webhook connection %r", self.kind, self.slack_conn_id)

    def _send_to_api(
        self, text: str, blocks: list[dict[str, Any]], conn_channel: Any, retry: list[RetryHandler]
    ) -> None:
        from airflow.providers.slack.hooks.slack import SlackHook

        hook = SlackHook(slack_conn_id=self.slack_conn_id, timeout=self.timeout, retry_handlers=retry)
        channel = self.channel or conn_channel or "#airflow"
        payload: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if self.icon_emoji:
            payload["icon_emoji"] = self.icon_emoji
        if self.username:
            payload["username"] = self.username
        hook.call("chat.postMessage", json=payload)
        self.log.info("Slack %s alert sent to %s", self.kind, channel)


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn and plain text give meaning to (its documented rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mention(who: str) -> str:
    if who.startswith("<"):
        return who
    if who.startswith("S"):
        return f"<!subteam^{who}>"
    return f"<@{who}>"


def _schedule_in_words(dag: Any) -> str | None:
    """Airflow's own words for the schedule (the task SDK's timetables carry the cron, not the words)."""
    if dag is None:
        return None
    timetable = getattr(dag, "timetable", None)
    described = getattr(timetable, "description", None)
    if described:
        return str(described)
    expression = getattr(timetable, "expression", None)
    if isinstance(expression, str):
        try:
            from cron_descriptor import CasingTypeEnum, ExpressionDescriptor

            words = ExpressionDescriptor(
                expression, casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True
            ).get_description()
        except Exception:
            words = expression
        return f"{words} ({expression}, {getattr(timetable, 'timezone', 'UTC')})"
    if getattr(dag, "schedule", "missing") is None:
        return "No schedule (manual runs only)"
    return None


def _duration(ti: Any, dag_run: Any) -> str | None:
    start = getattr(ti, "start_date", None) or getattr(dag_run, "start_date", None)
    end = getattr(ti, "end_date", None) or getattr(dag_run, "end_date", None)
    if start is None:
        return None
    end = end or pendulum.now("UTC")
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def _exception_summary(exception: Any) -> str | None:
    if exception is None:
        return None
    if isinstance(exception, str):
        first = exception.strip().splitlines()[0] if exception.strip() else ""
        return _redact(first)[:MAX_EXCEPTION_CHARS]
    first = (str(exception).strip().splitlines() or [""])[0]
    summary = f"{type(exception).__name__}: {first}" if first else type(exception).__name__
    summary = _redact(summary)
    return summary if len(summary) <= MAX_EXCEPTION_CHARS else summary[: MAX_EXCEPTION_CHARS - 1] + "…"


def _redact(text: str) -> str:
    """Apply Airflow's secret masker (both instances) to text bound for Slack."""
    from airflow.sdk._shared.secrets_masker import redact as sdk_redact

    text = str(sdk_redact(text))
    try:
        from airflow._shared.secrets_masker import redact as core_redact
    except ImportError:
        return text
    return str(core_redact(text))


# -- drop-in replacements for the team's callback functions ---------------------------------
#: The team's helpers only alerted in production; the drop-ins keep that default, changed for the
#: whole installation with ``[dts] slack_alert_environments`` (comma-separated; ``*`` = everywhere).
DEFAULT_ALERT_ENVIRONMENTS = "production"


def alert_environments() -> list[str] | None:
    """The ENVIRONMENT values the drop-ins send in (None: every environment), from Airflow's config."""
    from airflow.configuration import conf

    raw = conf.get("dts", "slack_alert_environments", fallback=DEFAULT_ALERT_ENVIRONMENTS)
    names = [name.strip() for name in str(raw).split(",") if name.strip()]
    return None if "*" in names else names


def task_fail_slack_alert(context: Any) -> None:
    """``on_failure_callback=task_fail_slack_alert``: failure alert (in ``[dts] slack_alert_environments``)."""
    SlackNotifier(kind="failure", environments=alert_environments())(context)


def task_fail_slack_alert_critical(context: Any) -> None:
    """``on_failure_callback=task_fail_slack_alert_critical``: failure alert with ``<!channel>``."""
    SlackNotifier(kind="critical", environments=alert_environments())(context)


def task_success_slack_alert(context: Any) -> None:
    """``on_success_callback=task_success_slack_alert``: success alert (in ``[dts] slack_alert_environments``)."""
    SlackNotifier(kind="success", environments=alert_environments())(context)
