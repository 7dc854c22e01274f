"""SecretMaskingXComBackend: XCom values with every secret the task's masker knows replaced by ``***``.

Any operator can push a secret to XCom by accident (a BashOperator's last output line that echoes a
password, a ``@task`` returning a dict with a token). The secret masker already knows those values
(every 1Password value, connection passwords, sensitive Variables); this backend applies it to the
value *before* it is stored, so neither the metadata database, the REST API nor the UI's XCom tab
ever holds it. Only known values are replaced (no guessing by key names), with the same threshold
as log masking (``[logging] min_length_masked_secret``).

Enable with ``[core] xcom_backend = airflow_dts_provider.xcom.backend.SecretMaskingXComBackend``
(``AIRFLOW__CORE__XCOM_BACKEND``). Storage and reading are Airflow's own.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
from airflow.sdk.bases.xcom import BaseXCom

#: Nesting deeper than this is stored as a marker rather than walked (JSON from serde is shallow).
MAX_DEPTH = 64


class SecretMaskingXComBackend(BaseXCom):
    """Airflow's XCom backend, with secret values masked before a value leaves the task."""

    @staticmethod
    def serialize_value(
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> Any:
        serialized = BaseXCom.serialize_value(
            value, key=key, task_id=task_id, dag_id=dag_id, run_id=run_id, map_index=map_index
        )
        return mask_known_secrets(serialized)


def mask_known_secrets(value: Any, depth: int = 0) -> Any:
    """Replace every registered secret inside strings (values and keys) of a JSON-like value."""
    if depth > MAX_DEPTH:
        return "<too deeply nested to check for secrets>"
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {
            (_redact_text(k) if isinstance(k, str) else k): mask_known_secrets(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_known_secrets(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_known_secrets(v, depth + 1) for v in value)
    return value


def _redact_text(text: str) -> str:
    """The task masker's value patterns applied to one string (no key-name rules: the string has no key).

    Longest pattern first: Airflow joins its patterns in set order, so where one secret is a prefix of
    another the hash seed decided whether the longer one's tail was stored. A prefix's escaped pattern
    is a prefix of the longer one's too, so ordering by length is enough.
    """
    patterns = getattr(_secrets_masker(), "patterns", None)
    if not isinstance(patterns, set | frozenset):  # a masker without the attribute: Airflow's own order
        return str(redact(text))
    if not patterns:
        return text
    return _longest_first(frozenset(patterns)).sub("***", text)


@functools.lru_cache(maxsize=8)
def _longest_first(patterns: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(sorted(patterns, key=lambda p: (-len(p), p))))
