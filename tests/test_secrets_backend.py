"""OnePasswordBackend against the dev vault over HTTP: mappings, prefixes, patterns, misses, outages."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied

from airflow_dts_provider._onepassword import OnePasswordConfigError
from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.secrets.onepassword import OnePasswordBackend, OnePasswordSecretUnusable
from tests.conftest import CANARY, TOKEN

MakeBackend = Callable[..., OnePasswordBackend]


@pytest.fixture
def make_backend(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeBackend]:
    for name in ("OP_CONNECT_HOST", "OP_CONNECT", "OP_CONNECT_TOKEN", "OP_API_TOKEN", "OP_VAULT", "OP_VAULT_ID"):
        monkeypatch.delenv(name, raising=False)
    made: list[OnePasswordBackend] = []

    def factory(**kwargs: object) -> OnePasswordBackend:
        values: dict[str, object] = {"connect_host": devvault.url, "connect_token": TOKEN, "vault": "Airflow Vault"}
        values.update(kwargs)
        backend = OnePasswordBackend(**values)
        backend.client.clear_cache()  # each test starts cold, even though clients are shared per settings
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.client.clear_cache()


# -- connections ----------------------------------------------------------------------------


def test_connection_from_fields(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("pg_fields")
    assert conn is not None
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema) == (
        "postgres", "db.example.internal", 5433, "reporter", "pg-fields-password", "reporting",
    )  # fmt: skip
    assert conn.extra_dejson == {"sslmode": "require", "connect_timeout": "10"}


def test_connection_from_a_1password_database_item(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("warehouse")
    assert conn is not None
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema) == (
        "postgres", "warehouse.example.internal", 5432, "dts_reader", "warehouse-password", "dts",
    )  # fmt: skip


def test_connection_from_a_login_item(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("socrata")
    assert conn is not None
    assert (conn.conn_type, conn.host, conn.login, conn.password) == (
        "generic", "https://data.example.internal", "socrata-user", "socrata-login-password",
    )  # fmt: skip


def test_connection_from_uri_field(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("uri_conn")
    assert conn is not None
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema) == (
        "mysql", "mysql.example.internal", 3306, "uri-user", "uri-pass", "shop",
    )  # fmt: skip


def test_connection_from_json_field(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("json_conn")
    assert conn is not None
    assert (conn.conn_type, conn.host, conn.password, conn.extra_dejson) == (
        "http", "api.example.internal", "json-pass", {"timeout": 3},
    )  # fmt: skip


def test_connection_extra_section(make_backend: MakeBackend) -> None:
    conn = make_backend().get_connection("data_dir")
    assert conn is not None
    assert conn.conn_type == "fs" and conn.extra_dejson == {"path": "/srv/dts-data", "host": "nfs.example.internal"}
    assert conn.host is None, "a field of the extra section is an extra, even when its label is a connection attribute"


def conn_json(backend: OnePasswordBackend, conn_id: str) -> dict[str, object]:
    """The connection exactly as the backend hands it to Airflow (before Airflow normalizes anything)."""
    value = backend.get_conn_value(conn_id)
    assert value is not None
    parsed: dict[str, object] = json.loads(value)
    return parsed


def test_login_and_password_come_from_1password_field_purposes_first(make_backend: MakeBackend) -> None:
    """A LOGIN item's username/password fields win over other fields whose labels also match."""
    assert conn_json(make_backend(), "by_purpose") == {
        "conn_type": "generic", "login": "purpose-user", "password": "purpose-password",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("conn_id", "conn_type"),
    [
        ("warehouse", "postgres"),  # the menu's "postgresql" (field id database_type)
        ("sqlserver_db", "mssql"),  # a field labelled "type", any case
        ("other_db", "cockroachdb"),  # not in the table: the menu value, lower case
        ("typed_login", "generic"),  # a "type" field outside a DATABASE item means nothing
    ],
)
def test_connection_type_from_a_database_items_type_menu(
    make_backend: MakeBackend, conn_id: str, conn_type: str
) -> None:
    assert conn_json(make_backend(), conn_id)["conn_type"] == conn_type


@pytest.mark.parametrize(
    ("conn_id", "problem"),
    [("bad_port", "field 'port' is not a number"), ("bad_extra", "field 'extra' is not valid JSON")],
)
def test_a_malformed_item_stops_airflows_search_with_an_error_naming_it(
    make_backend: MakeBackend, conn_id: str, problem: str
) -> None:
    """1Password holds the key: no other copy (environment, database) may answer in its place."""
    with pytest.raises(OnePasswordSecretUnusable) as raised:
        make_backend().get_conn_value(conn_id)
    assert str(raised.value) == (
        f"1Password connection {conn_id!r} not usable: 1Password item 'airflow/connections/{conn_id}': {problem}"
    )
    assert isinstance(raised.value, AirflowSecretsBackendAccessDenied), "what stops Airflow's search"


# -- variables and config -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_key", "variable-api-key"),
        ("password_only", "only-a-password"),
        ("login_item", "variable-login-password"),  # no value field, two fields: the password
        ("value_beside_password", "the-variable-value"),  # a value field wins over a password before it
        ("single_field", "single-field-value"),
        ("json_settings", '{"batch": 500, "mode": "incremental"}'),
    ],
)
def test_variable_shapes(make_backend: MakeBackend, key: str, value: str) -> None:
    assert make_backend().get_variable(key) == value


@pytest.mark.parametrize(
    ("kind", "title", "key", "fields"),
    [
        ("variable", "airflow/variables/two_fields", "two_fields", "first, second"),
        ("variable", "airflow/variables/no_fields", "no_fields", "none"),
        ("config", "airflow/config/two_fields_config", "two_fields_config", "first, second"),
    ],
)
def test_a_value_without_an_obvious_field_is_an_error_naming_item_key_and_fields(
    make_backend: MakeBackend, kind: str, title: str, key: str, fields: str
) -> None:
    backend = make_backend()
    with pytest.raises(OnePasswordSecretUnusable) as raised:
        (backend.get_variable if kind == "variable" else backend.get_config)(key)
    assert str(raised.value) == (
        f"1Password item {title!r} for {kind} {key!r} has no 'value' field and no single obvious one "
        f"(fields: {fields}); label the field holding the value 'value'"
    )


def test_two_value_fields_are_ambiguous_not_the_first(make_backend: MakeBackend) -> None:
    """Issue 27, finding 9: ``value`` in sections prod and test gave prod's, silently."""
    with pytest.raises(OnePasswordSecretUnusable) as raised:
        make_backend().get_variable("two_values")
    assert str(raised.value) == (
        "1Password variable 'two_values' not usable: Field 'value' of 1Password item 'airflow/variables/two_values' "
        "(vault 'Airflow Vault') exists in several sections (prod, test); say which one, e.g. 'section.field' or "
        "'.field' for the one without a section."
    )


def test_a_lookalike_key_does_not_find_another_keys_item(make_backend: MakeBackend) -> None:
    backend = make_backend()
    assert backend.get_variable("WAREHOUSE_DSN") == "warehouse-dsn-value", "case is ignored"
    assert backend.get_variable("warehou\u017fe_dsn") is None, "a long s is no s"


def test_duplicate_titles_are_an_error_naming_the_ids(make_backend: MakeBackend) -> None:
    with pytest.raises(OnePasswordSecretUnusable) as raised:
        make_backend().get_variable("twice")
    assert re.fullmatch(
        r"1Password variable 'twice' not usable: 2 items in vault 'Airflow Vault' are titled 'airflow/variables/twice' "
        r"\(ids: \w+, \w+\); rename one or address the item by id\.",
        str(raised.value),
    ), raised.value


def test_a_wrong_answer_from_connect_is_a_warning_naming_the_lookup(
    make_backend: MakeBackend, devvault: DevVaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    backend = make_backend()
    devvault.faults.update({"fail_status": 200, "fail_count": 1})  # a JSON object where a list belongs
    assert backend.get_variable("api_key") is None
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"1Password variable 'api_key' not read: 1Password Connect at {devvault.url} answered the vault list "
        "(/v1/vaults) with JSON of an unexpected shape (an object, expected a list)"
    )
    assert backend.get_variable("api_key") == "variable-api-key", "not an outage: the next lookup asks again"


def test_config(make_backend: MakeBackend) -> None:
    assert make_backend().get_config("smtp_password") == "smtp-config-secret"
    assert make_backend(config_prefix=None).get_config("smtp_password") is None


# -- prefixes, patterns, misses -------------------------------------------------------------


def test_custom_prefix_and_separator(make_backend: MakeBackend) -> None:
    backend = make_backend(connections_prefix="custom-conns", sep="--")
    conn = backend.get_connection("pg_fields")
    assert conn is not None and conn.host == "custom-prefix-host"


def test_empty_prefix_means_the_key_is_the_title(make_backend: MakeBackend) -> None:
    assert make_backend(variables_prefix="").get_variable("plain_variable") == "no-prefix-value"


def test_none_prefix_disables_the_kind_without_requests(make_backend: MakeBackend, devvault: DevVaultServer) -> None:
    backend = make_backend(variables_prefix=None, connections_prefix=None)
    assert backend.get_variable("api_key") is None
    assert backend.get_conn_value("pg_fields") is None
    assert devvault.request_count == 0


def test_lookup_pattern_filters_without_requests(make_backend: MakeBackend, devvault: DevVaultServer) -> None:
    backend = make_backend(variables_lookup_pattern=r"^api_", connections_lookup_pattern="^pg_")
    assert backend.get_variable("single_field") is None
    assert backend.get_conn_value("warehouse") is None
    assert devvault.request_count == 0
    assert backend.get_variable("api_key") == "variable-api-key"
    assert backend.get_conn_value("pg_fields") is not None
    assert make_backend(variables_lookup_pattern="^API_").get_variable("api_key") == "variable-api-key", (
        "patterns match case-insensitively, as README says"
    )


def test_missing_item_is_none_quietly(make_backend: MakeBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert make_backend().get_variable("not_in_1password") is None
    assert "No 1Password item for variable 'not_in_1password'" in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_misses_are_cached(make_backend: MakeBackend, devvault: DevVaultServer) -> None:
    backend = make_backend(miss_ttl=0.4)
    backend.client.settings  # noqa: B018 - the shared client's index refresh is rate-limited separately
    for _ in range(50):
        assert backend.get_variable("not_in_1password") is None
    assert devvault.stats()["by_kind"] == {"vault list": 1, "item list": 1}
    time.sleep(0.45)
    assert backend.get_variable("not_in_1password") is None
    assert devvault.stats()["by_kind"]["item list"] <= 2


def test_misses_are_remembered_for_miss_ttl_even_when_the_index_refreshes_on_every_miss(
    make_backend: MakeBackend, devvault: DevVaultServer
) -> None:
    """The client refreshes its title index on a miss at most every few seconds; the backend's own memory
    of misses is what spares 1Password the keys that live elsewhere. Seen here with refreshes always allowed.
    """
    remembering, forgetting = make_backend(miss_ttl=0.5), make_backend(miss_ttl=0)
    for backend in (remembering, forgetting):
        backend.settings = dataclasses.replace(backend.settings, index_refresh_interval=0.0)
        backend.client.clear_cache()

    def index_reads(backend: OnePasswordBackend, lookups: int) -> int:
        before = devvault.stats()["by_kind"].get("item list", 0)
        for _ in range(lookups):
            assert backend.get_variable("not_in_1password") is None
        return int(devvault.stats()["by_kind"].get("item list", 0)) - before

    assert index_reads(remembering, 5) == 2  # the index, its refresh for the missing title, then nothing
    time.sleep(0.55)
    assert index_reads(remembering, 3) == 1  # forgotten after miss_ttl: one refresh, remembered again
    assert index_reads(forgetting, 3) == 3  # miss_ttl=0: every lookup asks again


def test_remembered_misses_stay_bounded(make_backend: MakeBackend) -> None:
    """Keys come from DAG code: past 10,000 remembered misses, the expired ones are dropped."""
    backend = make_backend(miss_ttl=0.001)
    for n in range(10_050):  # what each miss of a lookup does (a lookup itself takes about a millisecond)
        backend._remember_miss(f"airflow/variables/missing_{n}")
    assert len(backend._misses) < 10_000
    assert backend.get_variable("not_in_1password") is None  # still remembering new misses after the pruning
    assert "airflow/variables/not_in_1password" in backend._misses


def test_hits_are_cached(make_backend: MakeBackend, devvault: DevVaultServer) -> None:
    backend = make_backend()
    for _ in range(20):
        assert backend.get_variable("api_key") == "variable-api-key"
    assert devvault.stats()["by_kind"] == {"vault list": 1, "item list": 1, "item": 1}


# -- outages and bad configuration ----------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_connect_warns_once_and_returns_none(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make_backend(connect_host=f"http://127.0.0.1:{unused_port()}", max_retries=1, outage_backoff=30)
    started = time.monotonic()
    for key in ("a", "b", "c"):
        assert backend.get_variable(key) is None
    assert backend.get_conn_value("pg_fields") is None
    assert time.monotonic() - started < 3, "later lookups in the outage window must not wait on Connect"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("1Password secrets backend cannot read variable 'a' (")
    assert warnings[0].endswith("); lookups skip 1Password for 30s")
    assert "ConnectError" in warnings[0] and TOKEN not in warnings[0]
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "1Password lookup of variable 'b' skipped: Connect failed recently" in skipped


def test_in_an_outage_a_key_1password_holds_stops_airflows_search(
    make_backend: MakeBackend, devvault: DevVaultServer
) -> None:
    """Issue 27, finding 8: a stale copy in the environment or the database must not answer for it."""
    backend = make_backend(outage_backoff=30, max_retries=0)
    assert backend.get_variable("api_key") == "variable-api-key"
    backend.client.clear_cache()
    devvault.faults.update({"fail_status": 503, "fail_count": 100})
    with pytest.raises(OnePasswordSecretUnusable) as raised:
        backend.get_variable("api_key")
    assert str(raised.value).startswith(
        "1Password holds variable 'api_key' (item 'airflow/variables/api_key') but cannot be read (1Password Connect"
    )
    assert str(raised.value).endswith(
        "no other copy is used in its place (backend_kwargs outage_fallback=true allows that)"
    )
    started = time.monotonic()
    with pytest.raises(OnePasswordSecretUnusable):
        backend.get_variable("api_key")  # inside the outage window: at once, no request
    assert time.monotonic() - started < 0.5
    assert backend.get_variable("never_looked_up") is None, "a key this process cannot place: the next source"
    assert backend.get_conn_value("pg_fields") is None


def test_in_an_outage_a_lookup_pattern_says_which_keys_1password_holds(
    make_backend: MakeBackend, devvault: DevVaultServer
) -> None:
    devvault.faults.update({"fail_status": 503, "fail_count": 100})
    backend = make_backend(variables_lookup_pattern=r"dts_", max_retries=0)
    with pytest.raises(OnePasswordSecretUnusable):
        backend.get_variable("dts_knack_app_id")
    assert backend.get_variable("other_key") is None, "not 1Password's: no request, the next source"


def test_outage_fallback_lets_airflow_go_on_to_its_other_sources(
    make_backend: MakeBackend, devvault: DevVaultServer
) -> None:
    backend = make_backend(outage_fallback=True, variables_lookup_pattern=r"dts_|api_key", max_retries=0)
    assert backend.get_variable("api_key") == "variable-api-key"
    backend.client.clear_cache()
    devvault.faults.update({"fail_status": 503, "fail_count": 100})
    assert backend.get_variable("api_key") is None
    assert backend.get_variable("dts_knack_app_id") is None


def test_outage_window_ends(make_backend: MakeBackend, devvault: DevVaultServer) -> None:
    backend = make_backend(outage_backoff=0.3, max_retries=0)
    devvault.faults.update({"fail_status": 503, "fail_count": 1})
    assert backend.get_variable("api_key") is None
    time.sleep(0.35)
    assert backend.get_variable("api_key") == "variable-api-key"


def test_bad_token_warns_without_the_token(make_backend: MakeBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    backend = make_backend(connect_token="not-the-token")
    assert backend.get_variable("api_key") is None
    assert "HTTP 401" in caplog.text and "not-the-token" not in caplog.text


def test_defaults_are_the_ones_readme_documents(make_backend: MakeBackend) -> None:
    backend = OnePasswordBackend(connect_host="http://connect:8080", connect_token="t", vault="V")
    settings = backend.settings
    assert backend.prefixes == {"connection": "airflow/connections", "variable": "airflow/variables",
                                "config": "airflow/config"}  # fmt: skip
    assert (backend.sep, backend.miss_ttl, backend.outage_backoff, backend.delegate_in_dag_parsing) == (
        "/",
        60,
        30,
        True,
    )
    assert backend.outage_fallback is False
    assert (settings.cache_ttl, settings.timeout, settings.total_timeout, settings.max_retries) == (300, 5, 15, 1)
    tuned = make_backend(cache_ttl=7, timeout=2, total_timeout=9, max_retries=0).settings
    assert (tuned.cache_ttl, tuned.timeout, tuned.total_timeout, tuned.max_retries) == (7, 2, 9, 0)


def test_unknown_kwargs_list_what_is_accepted(make_backend: MakeBackend) -> None:
    with pytest.raises(OnePasswordConfigError) as err:
        make_backend(conections_prefix="x")
    assert str(err.value).endswith(
        "accepted: connect_host, connect_token, vault, connections_prefix, variables_prefix, config_prefix, "
        "connections_lookup_pattern, variables_lookup_pattern, config_lookup_pattern, sep, cache_ttl, miss_ttl, "
        "outage_backoff, outage_fallback, timeout, total_timeout, max_retries, delegate_in_dag_parsing"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conections_prefix": "x"}, r"unknown backend_kwargs \['conections_prefix'\]"),
        ({"variables_lookup_pattern": "("}, "variables_lookup_pattern '\\(' is not a valid regex"),
        ({"vault": None}, "needs a vault"),
        ({"connect_host": None}, "host is not set"),
        ({"max_retries": 50}, "max_retries must be"),
    ],
)
def test_bad_configuration_fails_at_start(make_backend: MakeBackend, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OnePasswordConfigError, match=message):
        make_backend(**kwargs)


@pytest.mark.parametrize("name", ["sep", "connections_prefix", "variables_prefix", "config_prefix"])
def test_a_prefix_that_is_not_a_string_is_named(make_backend: MakeBackend, name: str) -> None:
    with pytest.raises(OnePasswordConfigError) as err:
        make_backend(**{name: 5})
    assert str(err.value) == f"OnePasswordBackend: {name} must be a string or null, got 5"


@pytest.mark.parametrize("name", ["connections_lookup_pattern", "variables_lookup_pattern", "config_lookup_pattern"])
def test_an_invalid_lookup_pattern_is_named(make_backend: MakeBackend, name: str) -> None:
    with pytest.raises(OnePasswordConfigError) as err:
        make_backend(**{name: "("})
    assert str(err.value) == (
        f"OnePasswordBackend: {name} '(' is not a valid regex: missing ), unterminated subpattern at position 0"
    )


def test_a_missing_vault_says_where_to_set_it(make_backend: MakeBackend) -> None:
    with pytest.raises(OnePasswordConfigError) as err:
        make_backend(vault=None)
    assert str(err.value) == "OnePasswordBackend needs a vault: set backend_kwargs 'vault' or OP_VAULT / OP_VAULT_ID"


def test_environment_defaults(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_CONNECT", devvault.url)
    monkeypatch.setenv("OP_API_TOKEN", TOKEN)
    monkeypatch.setenv("OP_VAULT_ID", "Airflow Vault")
    for name in ("OP_CONNECT_HOST", "OP_CONNECT_TOKEN", "OP_VAULT"):
        monkeypatch.delenv(name, raising=False)
    assert OnePasswordBackend().get_variable("api_key") == "variable-api-key"


# -- secrets stay secret --------------------------------------------------------------------


def test_values_are_masked_and_never_logged(make_backend: MakeBackend, caplog: pytest.LogCaptureFixture) -> None:
    from airflow._shared.secrets_masker import redact as core_redact
    from airflow.sdk._shared.secrets_masker import redact as sdk_redact

    caplog.set_level(logging.DEBUG)
    backend = make_backend()
    assert backend.get_variable("canary_var") == CANARY
    conn_value = backend.get_conn_value("canary_conn")
    assert conn_value is not None and json.loads(conn_value)["password"] == CANARY
    assert core_redact(f"v={CANARY}") == "v=***" and sdk_redact(f"v={CANARY}") == "v=***"
    assert CANARY not in caplog.text
    assert CANARY not in repr(backend) and TOKEN not in repr(backend.settings)


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        ("variable", "single_field", "single-field-value"),  # a plain (not concealed) field
        ("variable", "api_key", "variable-api-key"),
        ("config", "smtp_password", "smtp-config-secret"),
        ("connection", "warehouse", "warehouse-password"),
        ("connection", "uri_conn", "uri-pass"),
    ],
)
def test_every_value_returned_is_registered_with_the_masker(
    make_backend: MakeBackend, clean_masker: Callable[[str], str], kind: str, key: str, value: str
) -> None:
    """From an empty masker: only the backend's own registration can make these pass."""
    backend = make_backend()
    got = {"variable": backend.get_variable, "config": backend.get_config, "connection": backend.get_conn_value}[kind]
    result = got(key)
    assert result is not None and value in result
    assert clean_masker(f"seen {value}") == "seen ***"


def test_connection_secrets_are_registered_with_the_masker(
    make_backend: MakeBackend, clean_masker: Callable[[str], str]
) -> None:
    """A plain (not concealed) uri field: the whole URI, its password (as written and decoded) and query values."""
    value = make_backend().get_conn_value("plain_uri")
    assert value is not None and value.startswith("postgres://")
    for secret in (value, "p%40ss-plain-uri", "p@ss-plain-uri", "query-secret-value"):
        assert clean_masker(f"seen {secret} .") == "seen *** ."
    assert clean_masker("host db.example.internal") == "host db.example.internal"  # as Airflow leaves hosts


def test_a_connections_whole_extra_is_registered_with_the_masker(
    make_backend: MakeBackend, clean_masker: Callable[[str], str]
) -> None:
    extra = conn_json(make_backend(), "canary_extra")["extra"]
    assert isinstance(extra, str) and "EXTRA-JSON-CANARY" in extra
    assert clean_masker(extra) == "***"


def test_parsing_subprocesses_delegate_to_the_dag_processor(
    make_backend: MakeBackend,
    devvault: DevVaultServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In a DAG-parse child (context 'client' + a socket channel to its supervisor) the backend steps aside."""
    from airflow.sdk.execution_time import comms, task_runner

    # A channel that is never read: its type is what marks the process (sending to it would fail fast).
    channel = comms.CommsDecoder.__new__(comms.CommsDecoder)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    caplog.set_level(logging.DEBUG)
    assert make_backend().get_variable("api_key") is None
    assert "variable 'api_key': asked of the DAG processor, whose backend keeps the cache" in caplog.text
    assert devvault.request_count == 0
    assert make_backend(delegate_in_dag_parsing=False).get_variable("api_key") == "variable-api-key"
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # e.g. a task process forked by the scheduler
    assert make_backend().get_variable("api_key") == "variable-api-key"


@pytest.mark.parametrize("channel", ["absent", "none"])
def test_a_client_process_without_a_supervisor_channel_looks_up_itself(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch, channel: str
) -> None:
    """Context 'client' alone does not delegate: only a socket channel to a supervisor makes a parsing child."""
    from airflow.sdk.execution_time import task_runner

    from airflow_dts_provider.secrets.onepassword import in_supervised_parsing_process

    if channel == "absent":
        monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    else:
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    assert in_supervised_parsing_process() is False
    assert make_backend().get_variable("api_key") == "variable-api-key"
