"""The notifier's answer to Slack's HTTP 429: one retry after a short ``Retry-After``, given to slack_sdk.

A ``RetryHandler`` works the same for the API client and the incoming-webhook client (providers-slack
turns a webhook's 429 into an ``AirflowException`` that no longer carries the header). Imported only
when an alert is sent: slack_sdk takes a sixth of a second to import, DAG files import the notifier.
"""

from __future__ import annotations

import time

from slack_sdk.http_retry import RetryHandler, RetryState, default_retry_handlers
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse

#: seconds to wait when a 429 carries no readable Retry-After (Slack documents that it always sends one)
DEFAULT_WAIT = 1.0


class ShortRateLimitRetry(RetryHandler):
    """Retry once after a 429 whose Retry-After is at most ``max_wait`` seconds; remember a longer one."""

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_retry_count=1)
        self.max_wait = max_wait
        #: the Retry-After refused for being longer than ``max_wait`` (None: none refused)
        self.refused_wait: float | None = None

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after(response)
        if wait > self.max_wait:
            self.refused_wait = wait
            return False
        return True

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        assert response is not None  # _can_retry agreed only to a 429 response
        state.next_attempt_requested = True
        time.sleep(retry_after(response))
        state.increment_current_attempt()


def retry_after(response: HttpResponse) -> float:
    """Seconds the 429 asks to wait; header names are matched without case (the webhook client keeps the server's)."""
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                break
    return DEFAULT_WAIT


def retry_handlers(rate_limit: ShortRateLimitRetry) -> list[RetryHandler]:
    """slack_sdk's default handlers (one retry of a refused or reset connection) plus ``rate_limit``."""
    return [*default_retry_handlers(), rate_limit]
