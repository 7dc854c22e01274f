"""OnePasswordHook: connection handling, env fallback, resolve APIs, test_connection."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from airflow_dts_provider._onepassword import OnePasswordConfigError, OnePasswordError
from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.hooks.onepassword import OnePasswordHook
from tests.conftest import CANARY, TOKEN

ENV_NAMES = ("OP_CONNECT_HOST", "OP_CONNECT", "OP_CONNECT_TOKEN", "OP_API_TOKEN", "OP_VAULT", "OP_VAULT_ID")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ONEPASSWORD_DEFAULT", raising=False)
    return monkeypatch


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **conn: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "onepassword", **conn}))


def test_hook_from_connection(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    set_connection(clean_env, "op_team", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    hook = OnePasswordHook("op_team")
    assert hook.get_field("Knack", "prod.appId") == "knack-prod-app"
    assert hook.resolve("op://Other Vault/Knack/prod/appId") == "other-vault-knack-prod-app"
    assert hook.get_item("Login Item").category == "LOGIN"


def test_hook_resolve_many_takes_required_secrets_verbatim(
    clean_env: pytest.MonkeyPatch, devvault: DevVaultServer
) -> None:
    set_connection(clean_env, "op_team", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    required_secrets = {
        "KNACK_APP_ID": {"opitem": "Knack", "opfield": "prod.appId"},
        "KNACK_API_KEY": {"opitem": "Knack", "opfield": "prod.apiKey"},
        "NOTES": {"opitem": "Knack", "opfield": ".notes"},
        "LOGIN": "op://Team Vault/Login Item/password",
    }
    assert OnePasswordHook("op_team").resolve_many(required_secrets) == {
        "KNACK_APP_ID": "knack-prod-app",
        "KNACK_API_KEY": "knack-prod-key",
        "NOTES": "knack-notes-no-section",
        "LOGIN": "login-password",
    }


def test_connection_uri_form_with_host_and_port(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    host, port = devvault.server_address[:2]
    clean_env.setenv("AIRFLOW_CONN_OP_URI", f"onepassword://:{TOKEN}@{host}:{port}?vault=Team+Vault&timeout=3")
    hook = OnePasswordHook("op_uri")
    assert hook.settings.host == devvault.url and hook.settings.timeout == 3.0
    assert hook.resolve({"opitem": "Knack", "opfield": "test.appId"}) == "knack-test-app"


def test_hook_vault_argument_overrides_connection(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    set_connection(clean_env, "op_team", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    hook = OnePasswordHook("op_team", vault="Other Vault")
    assert hook.get_field("Knack", "prod.appId") == "other-vault-knack-prod-app"


@pytest.mark.parametrize(("host_var", "token_var", "vault_var"), [
    ("OP_CONNECT_HOST", "OP_CONNECT_TOKEN", "OP_VAULT"),
    ("OP_CONNECT", "OP_API_TOKEN", "OP_VAULT_ID"),
])  # fmt: skip
def test_default_hook_falls_back_to_environment(
    clean_env: pytest.MonkeyPatch, devvault: DevVaultServer, host_var: str, token_var: str, vault_var: str
) -> None:
    clean_env.setenv(host_var, devvault.url)
    clean_env.setenv(token_var, TOKEN)
    clean_env.setenv(vault_var, "Team Vault")
    assert OnePasswordHook().get_field("Knack", "prod.apiKey") == "knack-prod-key"


def test_sdk_variables_win_over_team_variables(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    clean_env.setenv("OP_CONNECT_HOST", devvault.url)
    clean_env.setenv("OP_CONNECT", "http://127.0.0.1:1")
    clean_env.setenv("OP_CONNECT_TOKEN", TOKEN)
    clean_env.setenv("OP_API_TOKEN", "stale")
    assert OnePasswordHook().settings.host == devvault.url


def test_named_connection_that_does_not_exist_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        _ = OnePasswordHook("does_not_exist").settings


def test_nothing_configured_says_what_to_set(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(OnePasswordConfigError, match="set OP_CONNECT_HOST"):
        OnePasswordHook().resolve("op://v/i/f")


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"password": TOKEN}, "has no host"),
        ({"host": "http://127.0.0.1:1"}, "has no password"),
        ({"host": "http://127.0.0.1:1", "password": TOKEN, "extra": {"timeout": "soon"}}, "extra 'timeout' must be"),
    ],
)
def test_incomplete_connection(clean_env: pytest.MonkeyPatch, conn: dict[str, object], message: str) -> None:
    set_connection(clean_env, "op_bad", **conn)
    with pytest.raises(OnePasswordConfigError, match=message):
        _ = OnePasswordHook("op_bad").settings


def test_test_connection(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    set_connection(clean_env, "op_ok", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    ok, message = OnePasswordHook("op_ok").test_connection()
    assert ok, message
    assert "'Team Vault'" in message and "readable" in message

    set_connection(clean_env, "op_badtoken", host=devvault.url, password="nope", extra={"vault": "Team Vault"})
    ok, message = OnePasswordHook("op_badtoken").test_connection()
    assert not ok and "HTTP 401" in message and "nope" not in message

    set_connection(clean_env, "op_novault", host=devvault.url, password=TOKEN, extra={"vault": "Missing Vault"})
    ok, message = OnePasswordHook("op_novault").test_connection()
    assert not ok and "'Missing Vault' not found" in message

    set_connection(clean_env, "op_down", host="http://127.0.0.1:1", password=TOKEN, extra={"max_retries": 0})
    ok, message = OnePasswordHook("op_down").test_connection()
    assert not ok and "unavailable" in message


def test_hook_errors_never_show_values(clean_env: pytest.MonkeyPatch, devvault: DevVaultServer) -> None:
    set_connection(clean_env, "op_team", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    hook = OnePasswordHook("op_team")
    with pytest.raises(OnePasswordError) as err:
        hook.get_field("Canary", "nope")
    assert CANARY not in str(err.value) and "secret" in str(err.value)
    assert CANARY not in repr(hook.get_item("Canary"))


def test_get_item_registers_every_value_it_hands_out_string_fields_in_sections_too(
    clean_env: pytest.MonkeyPatch, devvault: DevVaultServer, clean_masker: Callable[[str], str]
) -> None:
    """Issue 27, finding 2: STRING fields (API keys in sections) were handed out unmasked and reached XCom."""
    from airflow_dts_provider.xcom.backend import SecretMaskingXComBackend

    set_connection(clean_env, "op_team", host=devvault.url, password=TOKEN, extra={"vault": "Team Vault"})
    item = OnePasswordHook("op_team").get_item("Knack")
    by_label = {(f.section_label, f.label): f for f in item.fields}
    assert by_label[("prod", "appId")].type == "STRING" and by_label[(None, "notes")].type == "STRING"
    values = {f"{f.section_label}.{f.label}": f.value for f in item.fields}
    assert clean_masker(" ".join(str(v) for v in values.values())) == " ".join("***" for _ in values)
    stored = SecretMaskingXComBackend.serialize_value(values, key="return_value")
    assert not [v for v in values.values() if v and v in json.dumps(stored)], stored


def test_the_connect_token_is_registered_with_the_masker_as_soon_as_settings_hold_it(
    clean_masker: Callable[[str], str],
) -> None:
    """Issue 27, finding 3: a printed environment or a quoted header shows ``***``, not the token."""
    from airflow_dts_provider._onepassword import ConnectSettings

    token = "eyJhbGciOiJFUzI1NiJ9.connect-token-7c1e"
    ConnectSettings(host="http://op-connect:8080", token=token)
    assert clean_masker(f"OP_API_TOKEN={token}") == "OP_API_TOKEN=***"
    assert clean_masker(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


def test_moving_the_token_out_of_the_environment_keeps_it_for_this_processs_lookups(
    clean_env: pytest.MonkeyPatch, devvault: DevVaultServer, clean_masker: Callable[[str], str]
) -> None:
    import os
    import subprocess

    from airflow_dts_provider._onepassword import settings as settings_module

    clean_env.setattr(settings_module, "_TAKEN_FROM_ENVIRONMENT", {})
    clean_env.setenv("OP_CONNECT", devvault.url)
    clean_env.setenv("OP_API_TOKEN", TOKEN)
    clean_env.setenv("OP_VAULT_ID", "Team Vault")
    assert settings_module.take_token_from_environment() == ["OP_API_TOKEN"]
    assert "OP_API_TOKEN" not in os.environ
    child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    assert TOKEN not in child and "OP_CONNECT=" in child, "a program the task starts does not inherit it"
    assert OnePasswordHook().get_field("Knack", "prod.appId") == "knack-prod-app", "the hook's fallback still works"
    assert clean_masker(TOKEN) == "***"
    clean_env.setenv("OP_API_TOKEN", "a-new-token-set-later")
    assert settings_module.ConnectSettings.from_env().token == "a-new-token-set-later", "the environment wins"
