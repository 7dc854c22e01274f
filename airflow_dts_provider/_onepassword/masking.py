"""One rule for hiding secret values, shared by log masking and XCom scrubbing.

Airflow's masker replaces whole registered strings, and task output reaches the log one line at a
time, so a multi-line value is registered whole *and* line by line. Airflow skips values shorter
than ``[logging] min_length_masked_secret`` (default 5) -- masking ``"abc"`` everywhere would
shred logs -- and this module applies the same threshold to XCom scrubbing, so a value is either
hidden in both places or in neither.

A value also reaches logs in the forms Airflow and the standard library write it in on their own:
``conn.get_uri()`` percent-encodes a password, ``json.dumps`` and Jinja's ``tojson`` escape it, a
printed dict shows its ``repr``, an HTML page escapes it. ``encoded_forms`` lists those; ``mask``
registers them with every value it registers, and ``[logging] secret_mask_adapter`` set to
``airflow_dts_provider.secrets.masking.encoded_forms`` gives Airflow's own registrations (connection
passwords from its database, sensitive Variables) the same cover.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

import markupsafe

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
    return [part for part in dict.fromkeys(parts) if _long_enough(part, limit)]


def _long_enough(text: str, limit: int) -> bool:
    """What Airflow masks: at least ``limit`` characters, and not one of the words it never masks."""
    return len(text) >= limit and text.lower() not in SKIPPED


def encoded_forms(secret: str) -> list[str]:
    """The other ways ``secret`` (and each of its lines) is written out without anyone asking.

    Percent-encoded as ``get_uri()`` and ``urlencode`` do it (``quote`` with and without ``/`` kept,
    ``quote_plus``), JSON-escaped (ASCII-only and not; Jinja's ``tojson`` also escapes ``<>&'``),
    ``repr``-escaped as a printed dict or list shows it (and as bytes), HTML-escaped (the standard
    library's and Jinja's/markupsafe's entities), Unicode-normalized (NFC and NFD) and base64 of the
    whole value. Forms equal to the value are left out. This is the function for Airflow's ``[logging]
    secret_mask_adapter``: Airflow masks the value and every form returned.
    """
    if not isinstance(secret, str) or not secret:
        return []
    texts = [secret]
    if "\n" in secret or "\r" in secret:
        texts += [line.strip() for line in secret.splitlines() if line.strip()]
    forms: dict[str, None] = {}
    for text in texts:
        for form in _encodings(text):
            if form and form != secret:
                forms.setdefault(form, None)
    return list(forms)


def _encodings(text: str) -> Iterable[str]:
    as_json = json.dumps(text)[1:-1]
    yield text
    yield quote(text, safe="")
    yield quote(text)
    yield quote_plus(text)
    yield as_json
    yield json.dumps(text, ensure_ascii=False)[1:-1]
    yield (as_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027"))
    yield repr(text)[1:-1]
    yield repr(text.encode("utf-8", "backslashreplace"))[2:-1]
    yield html.escape(text)
    yield html.escape(text, quote=False)
    yield str(markupsafe.escape(text))  # Jinja's autoescape and its |e filter: &#39; and &#34;
    yield unicodedata.normalize("NFC", text)
    yield unicodedata.normalize("NFD", text)
    yield base64.b64encode(text.encode("utf-8", "backslashreplace")).decode("ascii")


def is_too_short(value: str) -> bool:
    """True when Airflow would not mask this value at all (a caller may want to warn)."""
    return bool(value) and not maskable_parts(value)


def hidden_forms(value: str) -> list[str]:
    """Everything to hide for one value: its maskable parts and their encoded forms, long enough to mask."""
    parts = maskable_parts(value)
    if not parts:
        return parts
    limit = min_length()
    return list(dict.fromkeys([*parts, *(form for form in encoded_forms(value) if _long_enough(form, limit))]))


def mask(value: Any) -> list[str]:
    """Register a secret value, each of its lines and their encoded forms with Airflow's secret maskers.

    Returns the parts registered (the value and its lines; empty when too short to mask). The task
    SDK's masker covers task logs (and tells the supervisor, one message for all the parts); server
    processes (scheduler, API server, DAG processor) filter their own logs through the core masker,
    so register there too. Where ``[logging] secret_mask_adapter`` is ``encoded_forms`` already, the
    maskers add the forms themselves and only the parts are sent.
    """
    parts = maskable_parts(value) if isinstance(value, str) else []
    masker = _sdk_masker()
    if not parts or (masker is not None and re.escape(value) in getattr(masker, "patterns", ())):
        return parts  # too short, or registered already (a warm lookup): its forms went in with it
    adapter = getattr(masker, "secret_mask_adapter", None)
    adapter_adds_forms = getattr(adapter, "__wrapped__", adapter) is encoded_forms  # [logging] secret_mask_adapter
    as_json: list[Any] = parts if adapter_adds_forms else hidden_forms(value)  # the maskers register each element
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


def _sdk_masker() -> Any:
    """The task SDK's secret masker, or None where the SDK is not installed."""
    try:
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:
        return None
    return _secrets_masker()


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
    """Every maskable part of ``values`` and its encoded forms, longest first (a secret inside a longer one
    cannot split it)."""
    return sorted({p for v in values for p in hidden_forms(v)}, key=len, reverse=True)


def scrub_text(text: str, parts: Iterable[str]) -> str:
    """Replace each of ``parts`` (from ``scrub_parts``: maskable, longest first) in ``text`` with ``***``."""
    for part in parts:
        text = text.replace(part, "***")
    return text
