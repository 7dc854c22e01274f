"""OnePasswordHook: connection handling, env fallback, resolve APIs, test_connection."""

from __future__ import annotations

import json

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
