"""One rule for hiding secret values, shared by log masking and XCom scrubbing.

Airflow's masker replaces whole registered strings, and task output reaches the log one line at a
time, so a multi-line value is registered whole *and* line by line. Airflow skips values shorter
than ``[logging] min_length_masked_secret`` (default 5) -- masking ``"abc"`` everywhere would
shred logs -- and this module applies the same threshold to XCom scrubbing, so a value is either
hidden in both places or in neither.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Airflow's own default for ``[logging] min_length_masked_secret``.
DEFAULT_MIN_LENGTH = 5
#: Airflow never masks these (its ``SECRETS_TO_SKIP_MASKING``); neither do we, to stay consistent.
SKIPPED = frozenset({"airflow"})


@functools.cache
def min_length() -> int:
    """Shortest value Airflow masks, from ``[logging] min_length_masked_secret`` (read once, as Airflow does)."""
    try:
        from airflow.sdk.configuration import conf

        return max(1, conf.getint("logging", "min_length_masked_secret", fallback=DEFAULT_MIN_LENGTH))
    except Exception:
        return DEFAULT_MIN_LENGTH


def maskable_parts(value: str, shortest: int | None = None) -> list[str]:
    """The strings to hide for one secret value: the value and each of its lines, long enough to mask."""
    if not isinstance(value, str) or not value:
        return []
    limit = min_length() if shortest is None else shortest
    parts = [value]
    if "\n" in value or "\r" in value:
        parts += [line.strip() for line in value.splitlines()]
    seen: dict[str, None] = {}
    for part in parts:
        if len(part) >= limit and part.lower() not in SKIPPED:
            seen.setdefault(part, None)
    return list(seen)


def is_too_short(value: str) -> bool:
    """True when Airflow would not mask this value at all (a caller may want to warn)."""
    return bool(value) and not maskable_parts(value)


def mask(value: Any) -> list[str]:
    """Register a secret value (and each of its lines) with Airflow's secret maskers; returns what was registered.

    The task SDK's masker covers task logs (and tells the supervisor, one message for all the parts);
    server processes (scheduler, API server, DAG processor) filter their own logs through the core
    masker, so register there too.
    """
    parts = maskable_parts(value) if isinstance(value, str) else []
    if not parts:
        return parts
    as_json: list[Any] = parts  # a JSON list: the maskers register each element
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(as_json)
    except Exception:
        log.warning("Could not register a 1Password value with the task SDK secret masker")
    try:
        from airflow._shared.secrets_masker import mask_secret as core_mask_secret
    except ImportError:  # a worker with only the task SDK installed
        return parts
    try:
        core_mask_secret(as_json)
    except Exception:
        log.warning("Could not register a 1Password value with the core secret masker")
    return parts


def mask_json_leaves(value: Any) -> None:
    """Register every string (and number written as text) inside a JSON-like value."""
    if isinstance(value, dict):
        for inner in value.values():
            mask_json_leaves(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            mask_json_leaves(inner)
    elif isinstance(value, str) and value.lower() not in ("true", "false", "null", "none"):
        mask(value)


def scrub_parts(values: Iterable[str]) -> list[str]:
    """Every maskable part of ``values``, longest first (so a secret inside a longer one cannot split it)."""
    return sorted({p for v in values for p in maskable_parts(v)}, key=len, reverse=True)


def scrub_text(text: str, parts: Iterable[str]) -> str:
    """Replace each of ``parts`` (from ``scrub_parts``: maskable, longest first) in ``text`` with ``***``."""
    for part in parts:
        text = text.replace(part, "***")
    return text
