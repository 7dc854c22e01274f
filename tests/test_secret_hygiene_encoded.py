"""Issue 27, finding 1: a secret is masked in the forms Airflow and the standard library write it in.

Real Airflow maskers (both of them, emptied by ``clean_masker``), real ``Connection.get_uri()``, real
Jinja. The real runs (task logs, rendered fields, XCom, the metadata DB) are in
tests/test_secret_hygiene_e2e.py, whose sweep searches every canary's encoded forms too.
"""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import jinja2
import markupsafe
import pytest

from airflow_dts_provider._onepassword import mask
from airflow_dts_provider._onepassword.masking import encoded_forms, scrub_parts, scrub_text
from airflow_dts_provider.xcom.backend import mask_known_secrets

Masked = Callable[[str], str]

#: What the reviewer's password looked like, plus every character an encoder treats specially.
PASSWORD = "p@ss/w0rd+S\u00e9cret=1 x'\"<&>\\\t-ENC-7d1f"
EXTRA = "extra&value<SECRET5>-ENC-2b9c"


def renderings(value: str) -> dict[str, str]:
    """Sixteen ways a value is written out; written here, not taken from the code under test."""
    jinja = jinja2.Environment(autoescape=False)
    return {
        "quote": quote(value),
        "quote safe=''": quote(value, safe=""),
        "quote_plus": quote_plus(value),
        "urlencode": urlencode({"k": value})[2:],
        "json.dumps": json.dumps({"k": value}),
        "json.dumps ensure_ascii=False": json.dumps([value], ensure_ascii=False),
        "Jinja tojson": jinja.from_string("{{ v | tojson }}").render(v=value),
        "html.escape": html.escape(value),
        "markupsafe (Jinja autoescape)": str(markupsafe.escape(value)),
        "str(dict)": str({"password": value}),
        "str(list)": str([value]),
        "repr of bytes": repr(value.encode()),
        "NFD": unicodedata.normalize("NFD", value),
        "base64": base64.b64encode(value.encode()).decode(),
        "as it is": value,
        "Jinja autoescape render": jinja2.Environment(autoescape=True).from_string("{{ v }}").render(v=value),
    }


def test_the_reviewers_sixteen_renderings_all_differ_from_the_value() -> None:
    """Else the test below would prove nothing for them."""
    shown = renderings(PASSWORD)
    assert len(shown) == 16
    assert [name for name, text in shown.items() if PASSWORD in text] == ["as it is"]


@pytest.mark.parametrize("how", list(renderings(PASSWORD)))
def test_a_registered_value_is_masked_in_every_form_it_is_written_in(clean_masker: Masked, how: str) -> None:
    mask(PASSWORD)
    text = f"before {renderings(PASSWORD)[how]} after"
    masked = clean_masker(text)
    assert "***" in masked and "ENC-7d1f" not in masked, masked
    assert masked.startswith("before ") and masked.endswith(" after")


def test_get_uri_of_a_real_connection_is_masked_password_and_extras(clean_masker: Masked) -> None:
    from airflow.sdk import Connection

    mask(PASSWORD)
    mask(EXTRA)
    conn = Connection(
        conn_id="warehouse", conn_type="postgres", host="db.example.internal", login="dts_reader",
        password=PASSWORD, schema="dts", extra=json.dumps({"sslkey": EXTRA}),
    )  # fmt: skip
    uri = conn.get_uri()
    assert quote(PASSWORD, safe="") in uri and quote_plus(EXTRA) in uri, "what Airflow writes"
    masked = clean_masker(uri)
    assert "ENC-7d1f" not in masked and "ENC-2b9c" not in masked, masked
    assert masked.startswith("postgres://dts_reader:***@db.example.internal/dts?sslkey=***"), masked


def test_the_xcom_guard_and_the_container_output_scrub_hide_the_same_forms(clean_masker: Masked) -> None:
    mask(PASSWORD)
    dsn = f"postgres://u:{quote(PASSWORD, safe='')}@h/db"
    stored = mask_known_secrets({"dsn": dsn, "as_json": json.dumps(PASSWORD)})
    assert "ENC-7d1f" not in json.dumps(stored), stored
    scrubbed = scrub_text(f"{json.dumps(PASSWORD)} {quote_plus(PASSWORD)} {PASSWORD!r}", scrub_parts([PASSWORD]))
    assert scrubbed == "\"***\" *** '***'", scrubbed


def test_a_multi_line_secret_is_masked_json_escaped_whole_and_line_by_line(clean_masker: Masked) -> None:
    key = "-----BEGIN KEY-----\nline-one-\u00e9-5a5a\nline-two/+=-6b6b\n-----END KEY-----"
    mask(key)
    masked = clean_masker(f"{json.dumps({'key': key})} {quote('line-two/+=-6b6b', safe='')}")
    assert "5a5a" not in masked and "6b6b" not in masked, masked


def test_transformations_not_covered_are_the_ones_readme_names(clean_masker: Masked) -> None:
    """README's "What is masked" lists these as not covered; this keeps that list honest."""
    mask(PASSWORD)
    assert "ENC-7D1F" in clean_masker(PASSWORD.upper()), "case changes"
    half = len(PASSWORD) // 2
    assert "ENC-7d1f" in clean_masker(f"{PASSWORD[:half]}\n{PASSWORD[half:]}"), "a value cut in two"
    inner = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert clean_masker(inner) == inner, "base64 of a longer text holding the value (a Basic auth header)"


def test_with_airflows_adapter_setting_its_own_registrations_get_the_forms_too(tmp_path: Any) -> None:
    """``[logging] secret_mask_adapter`` read by Airflow itself: a connection from Airflow's environment
    (not from 1Password) is masked in its ``get_uri()`` form, and our registrations send no forms of forms."""
    script = r"""
import json, os
from urllib.parse import quote
from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
from airflow_dts_provider.secrets.masking import encoded_forms
from airflow_dts_provider._onepassword import mask
masker = _secrets_masker()
assert masker.secret_mask_adapter is encoded_forms, masker.secret_mask_adapter
from airflow.sdk import log as sdk_log
at_start = set(masker.patterns)
sdk_log.mask_secret(os.environ["PW"])             # what Airflow does with a connection password
before = set(masker.patterns)
mask(os.environ["PW"])                             # ours on top: nothing new to add
print(json.dumps({"uri": str(redact("dsn " + quote(os.environ["PW"], safe=""))), "added": len(masker.patterns - before),
                  "patterns": len(masker.patterns - at_start)}))
"""
    env = {**os.environ, "AIRFLOW__LOGGING__SECRET_MASK_ADAPTER": "airflow_dts_provider.secrets.masking.encoded_forms",
           "AIRFLOW_HOME": str(tmp_path), "PW": PASSWORD}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["uri"] == "dsn ***"
    assert out["added"] == 0, "mask() sent only the value: the adapter added the forms"
    assert out["patterns"] == 1 + len([f for f in encoded_forms(PASSWORD) if len(f) >= 5])


def test_forms_are_only_added_where_they_differ(clean_masker: Masked) -> None:
    """A plain token has one form besides itself (base64): registering costs the masker two patterns."""
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    assert encoded_forms("AbCdEf0123456789-token") == [base64.b64encode(b"AbCdEf0123456789-token").decode()]
    mask("AbCdEf0123456789-token")
    assert len(_secrets_masker().patterns) == 2
    assert encoded_forms("") == [] and encoded_forms(None) == []  # type: ignore[arg-type]
