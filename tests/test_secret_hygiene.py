"""Issue 13, fast half: each leak path found by the adversarial review, closed and proven at unit level.

Real parts: the real SDK client against the dev vault (or, for shapes and speeds the dev vault will not
produce, a small local HTTP stand-in in this file), Airflow's own secret maskers (emptied per test by
``clean_masker``), the real SlackNotifier message builder. The Airflow runs that found these are in
tests/test_secret_hygiene_e2e.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from airflow.models.connection import Connection

from airflow_dts_provider._onepassword import (
    ConnectSettings,
    FieldNotFoundError,
    ItemNotFoundError,
    OnePasswordClient,
    OnePasswordConfigError,
    OnePasswordError,
    OnePasswordUnavailableError,
    VaultNotFoundError,
    mask,
    mask_json_leaves,
    maskable_parts,
    scrub_parts,
    scrub_text,
)
from airflow_dts_provider._onepassword.client import _describe_transport_error
from airflow_dts_provider._onepassword.masking import is_too_short
from airflow_dts_provider._onepassword.settings import without_userinfo
from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.hooks.onepassword import OnePasswordHook, settings_from_connection
from airflow_dts_provider.notifications.slack import SlackNotifier
from airflow_dts_provider.operators.docker import SecretDockerOperator, scrub
from airflow_dts_provider.secrets.onepassword import OnePasswordBackend
from airflow_dts_provider.xcom.backend import SecretMaskingXComBackend
from tests.conftest import TOKEN

Masked = Callable[[str], str]


# ---------------------------------------------------------------------------------------------- 1. token
@pytest.mark.parametrize("junk", ["\n", "\r\n", " ", "\t", "\x00", "\u00a0", "\x7f"])
def test_token_with_whitespace_or_control_characters_is_refused_without_echoing_it(junk: str) -> None:
    bad = TOKEN + junk
    made = [
        lambda: ConnectSettings(host="http://127.0.0.1:1", token=bad),
        lambda: settings_from_connection(Connection(conn_id="op", conn_type="onepassword", host="h", password=bad)),
        lambda: OnePasswordBackend(connect_host="http://127.0.0.1:1", connect_token=bad, vault="V"),
    ]
    for make in made:
        with pytest.raises(OnePasswordConfigError, match="whitespace or control characters") as raised:
            make()
        assert TOKEN not in str(raised.value)


def test_unsendable_request_is_a_config_error_without_header_text_and_not_retried(
    devvault: DevVaultServer, make_client: Callable[..., OnePasswordClient]
) -> None:
    """Had a bad token got past the settings check, httpx's LocalProtocolError quotes the header."""
    client = make_client(max_retries=3)
    object.__setattr__(client.settings, "token", TOKEN + "\n")
    client._start_process_state()  # rebuild the SDK session with the bad token, as a fresh client would
    with pytest.raises(OnePasswordConfigError) as raised:
        client.resolve({"opitem": "Knack", "opfield": "prod.appId"})
    assert str(raised.value) == (
        f"the request to 1Password Connect at {devvault.url} for the vault list could not be sent: the host or "
        "token is not valid in an HTTP request; check the connection's host and password"
    )
    assert raised.value.__cause__ is None and raised.value.__context__ is not None  # suppressed, not chained
    assert client.stats.requests == 1, "an unsendable request is not an outage: no retries"
    assert devvault.request_count == 0


def test_transport_error_text_loses_credentials() -> None:
    settings = ConnectSettings(host="http://op:8080", token=TOKEN)
    err = httpx.ReadError(f"peer reset; sent Authorization: Bearer {TOKEN}xyz to http://ann:pw123456@op:8080/v1")
    text = _describe_transport_error(err, settings)
    assert TOKEN not in text and "pw123456" not in text and "ann" not in text
    assert text.startswith("peer reset")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://ann:p@ss-secret@op:8080/x", "http://op:8080/x"),  # an unescaped '@' in the password
        ("http://ann@op:8080", "http://op:8080"),
        ("http://op:8080/", "http://op:8080/"),
        ("http://[::1:8080/ann:pw-secret", "<invalid URL>"),  # urlsplit refuses it: nothing of it is shown
    ],
)
def test_hosts_are_shown_without_their_userinfo(url: str, shown: str) -> None:
    assert without_userinfo(url) == shown


# ---------------------------------------------------------------------------------------------- 2. lines
def test_multi_line_values_are_masked_line_by_line(clean_masker: Masked, make_client: Any) -> None:
    mask("first-line-secret\r\nsecond-line-secret\nab")
    assert clean_masker("log: first-line-secret") == "log: ***"
    assert clean_masker("second-line-secret") == "***"
    assert clean_masker("ab") == "ab", "a 2-character line is below Airflow's threshold, as whole values are"


def test_log_masking_and_xcom_scrubbing_apply_the_same_rule(clean_masker: Masked) -> None:
    values = ["abcd", "abcde", "airflow", "Airflow", "one-line-value", "two\nlines-here", "x\ny"]
    for value in values:
        mask(value)
    for value in values:
        for text in {value, *value.splitlines()}:
            in_log = clean_masker(text) == "***"
            in_xcom = scrub(text, values) == "***"
            assert in_log == in_xcom, f"{text!r}: log masked={in_log}, XCom scrubbed={in_xcom}"
            assert in_log == (text in maskable_parts(value)), text
    assert maskable_parts("abcd") == [] and maskable_parts("abcde") == ["abcde"]


def test_the_masking_rule_in_detail() -> None:
    """What maskable_parts returns is what both log masking and XCom scrubbing hide."""
    assert maskable_parts("line-one-x\rline-two-x") == ["line-one-x\rline-two-x", "line-one-x", "line-two-x"]
    assert maskable_parts("aaaaa\nbbbbb")[0] == "aaaaa\nbbbbb", "the whole value first, then its lines"
    assert maskable_parts("abc", shortest=3) == ["abc"] and maskable_parts("abc") == []
    assert maskable_parts("") == [] and maskable_parts(None) == []  # type: ignore[arg-type]
    assert maskable_parts(1234567) == [], "a number is no secret text"  # type: ignore[arg-type]
    assert is_too_short("abcd") and not is_too_short("abcde") and not is_too_short("")


def test_scrubbing_replaces_longer_secrets_first() -> None:
    # reverse alphabetical order would replace "zzzzz" inside the longer secret first and leave "a***zz"
    assert scrub_text("key azzzzzzz", scrub_parts(["zzzzz", "azzzzzzz"])) == "key ***"


def test_json_leaves_are_masked_at_any_depth_except_json_words(clean_masker: Masked) -> None:
    mask_json_leaves({"a": ["nested-one-x", {"b": ("nested-two-x",)}], "words": ["TRUE", "false", "null", "None"]})
    assert clean_masker("nested-one-x nested-two-x") == "*** ***"
    assert clean_masker("TRUE false null None") == "TRUE false null None"


def test_json_words_are_never_masked_even_below_the_default_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``min_length_masked_secret`` lowered, "true"/"null"/"none" are long enough: still not secrets."""
    from airflow.sdk import log as sdk_log

    from airflow_dts_provider._onepassword import masking

    registered: list[str] = []
    monkeypatch.setattr(masking, "min_length", lambda: 3)
    monkeypatch.setattr(sdk_log, "mask_secret", lambda parts: registered.extend(parts))
    monkeypatch.setattr("airflow._shared.secrets_masker.mask_secret", lambda parts: None)
    mask_json_leaves({"words": ["TRUE", "False", "null", "None"], "token": "abc"})
    assert registered[0] == "abc"
    assert not {r.lower() for r in registered} & {"true", "false", "null", "none"}


def test_a_masker_that_fails_is_a_warning_not_a_failed_lookup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk import log as sdk_log

    def broken(parts: object) -> None:
        raise RuntimeError("masker broke")

    monkeypatch.setattr(sdk_log, "mask_secret", broken)
    monkeypatch.setattr("airflow._shared.secrets_masker.mask_secret", broken)
    caplog.set_level(logging.WARNING)
    assert mask("failing-masker-value") == ["failing-masker-value"]
    assert [r.getMessage() for r in caplog.records] == [
        "Could not register a 1Password value with the task SDK secret masker",
        "Could not register a 1Password value with the core secret masker",
    ]
    assert "failing-masker-value" not in caplog.text


def test_resolve_registers_each_line_of_a_secret(clean_masker: Masked, make_client: Any) -> None:
    client = make_client(vault="Docker Vault")
    value = client.resolve("op://Docker Vault/Multiline Canary/secret")
    first, second = value.splitlines()
    assert clean_masker(f"{first} / {second}") == "*** / ***"


def test_short_secret_gets_a_warning_naming_it_not_its_value(
    clean_masker: Masked, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    with caplog.at_level("WARNING"):
        client.resolve_many({"TWO": {"opitem": "airflow/variables/two_fields", "opfield": "second",
                                     "opvault": "Airflow Vault"},
                             "LONG_ENOUGH": {"opitem": "Knack", "opfield": "prod.appId"}})  # fmt: skip
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "TWO (op://Airflow Vault/airflow/variables/two_fields/second) is too short for Airflow to mask (under "
        "[logging] min_length_masked_secret characters): it will show in clear if printed"
    ]


# ---------------------------------------------------------------------------------------------- 3. extras
def test_connection_extras_from_the_backend_are_masked(clean_masker: Masked, devvault: DevVaultServer) -> None:
    backend = OnePasswordBackend(connect_host=devvault.url, connect_token=TOKEN, vault="Airflow Vault", cache_ttl=0)
    conn = json.loads(backend.get_conn_value("canary_extra") or "{}")
    assert json.loads(conn["extra"])["api_key"] == "EXTRA-SECTION-CANARY-9e2f-do-not-leak"
    assert clean_masker("EXTRA-SECTION-CANARY-9e2f-do-not-leak") == "***"
    assert clean_masker("EXTRA-JSON-CANARY-4b1d-do-not-leak") == "***"
    assert clean_masker("extra.example.internal") == "extra.example.internal", "the host stays readable"
    assert clean_masker("false") == "false", "JSON literals written as text are not secrets"


def test_whole_json_connection_field_password_and_extras_are_masked(
    clean_masker: Masked, devvault: DevVaultServer
) -> None:
    backend = OnePasswordBackend(connect_host=devvault.url, connect_token=TOKEN, vault="Airflow Vault", cache_ttl=0)
    assert backend.get_conn_value("json_conn")
    assert clean_masker("password json-pass") == "password ***"
    assert clean_masker("api.example.internal") == "api.example.internal", "the host stays readable"


def test_uri_connection_password_is_masked(clean_masker: Masked) -> None:
    from airflow_dts_provider._onepassword import Item
    from airflow_dts_provider.secrets.onepassword import connection_value, mask_connection

    raw = {"id": "i", "title": "t", "fields": [{"id": "uri", "label": "uri", "value": "postgres://u:p%40ss-w0rd@db/x"}]}
    item = Item.from_json(raw)
    mask_connection(item, connection_value(item))
    assert clean_masker("password p@ss-w0rd") == "password ***"


# ---------------------------------------------------------------------------------------------- 4. Slack
INJECTIONS = "<!channel> <@U123> <https://evil.example|Re-authenticate here> ``` *bold* & more"


def test_slack_message_escapes_everything_from_the_task() -> None:
    notifier = SlackNotifier(kind="critical", mentions=["U024BE7LH"])
    context = {"exception": RuntimeError(INJECTIONS), "run_id": "manual__<!here>", "ti": None}
    text, blocks = notifier.build_message(context)
    rendered = [text, *(json.dumps(b) for b in blocks)]
    for part in rendered:
        assert "<!channel>" not in part and "<@U123>" not in part and "<https://evil" not in part
        assert "<!here>" not in part
    assert "<@U024BE7LH>" in text, "our own configured mention is still a mention"
    assert "&lt;!channel&gt;" in text and "&amp; more" in text
    error_block = next(b["text"]["text"] for b in blocks if b.get("text", {}).get("text", "").startswith("*Error*"))
    assert error_block.startswith("*Error*\n```") and error_block.endswith("```")
    assert error_block.count("```") == 2, "the error cannot close its own code block"


# ---------------------------------------------------------------------------------------------- 5. deadline
@dataclass
class SlowServer:
    """A TCP server that answers like a broken Connect: trickling a byte at a time, or never."""

    mode: str  # "trickle" | "silent"
    port: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if self.mode == "silent":
                self.stopped.wait(60)
                return
            payload = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n[" + b" " * 2000
            )
            for byte in payload:
                if self.stopped.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_slow_connect_server_cannot_hold_a_lookup_past_its_total_deadline(mode: str) -> None:
    server = SlowServer(mode)
    settings = ConnectSettings(
        host=f"http://127.0.0.1:{server.port}", token=TOKEN, vault="V", timeout=2, total_timeout=3, max_retries=3,
        backoff=0.1,
    )  # fmt: skip
    client = OnePasswordClient(settings)
    started = time.monotonic()
    try:
        with pytest.raises(OnePasswordUnavailableError, match="3s total deadline") as raised:
            client.resolve("op://V/item/field")
    finally:
        took = time.monotonic() - started
        server.stop()
        client.close()
    assert 2.5 <= took < 4.0, f"lookup took {took:.1f}s with total_timeout=3"
    assert f"127.0.0.1:{server.port}" in str(raised.value)


@contextlib.contextmanager
def full_listen_queue() -> Iterator[int]:
    """A port whose listen queue is full: Linux drops further SYNs, so a connect to it just waits."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # takes the queue's one place
            yield port


def error_within(client: OnePasswordClient, seconds: float) -> str:
    """The error text of a lookup, which must end within `seconds` (a hang fails here, not in a CI timeout)."""
    outcome: list[str] = []

    def lookup() -> None:
        try:
            client.resolve("op://V/item/field")
        except OnePasswordError as err:
            outcome.append(str(err))

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the lookup was still running after {seconds}s"
    assert outcome, "the lookup ended without a OnePasswordError"
    return outcome[0]


@pytest.mark.parametrize("stall", ["connect", "TLS handshake"])
def test_each_attempt_ends_after_timeout_where_the_connection_stalls(stall: str) -> None:
    """A connect with no SYN-ACK, or a TLS handshake never answered, ends each attempt after `timeout`;
    the attempts are retried within total_timeout and the error says what happened."""
    with contextlib.ExitStack() as cleanup:
        if stall == "connect":
            host = f"http://127.0.0.1:{cleanup.enter_context(full_listen_queue())}"
        else:
            server = SlowServer("silent")  # reads the ClientHello, then says nothing
            cleanup.callback(server.stop)
            host = f"https://127.0.0.1:{server.port}"
        settings = ConnectSettings(
            host=host, token=TOKEN, vault="V", timeout=0.5, total_timeout=5, max_retries=2, backoff=0.1
        )  # fmt: skip
        client = OnePasswordClient(settings)
        cleanup.callback(client.close)
        error = error_within(client, 4)
    assert error == (
        f"1Password Connect at {host} is unavailable for the vault list after 3 attempt(s): timed out after 0.5s"
    )


def test_total_deadline_covers_parallel_item_fetches(devvault: DevVaultServer, make_client: Any) -> None:
    devvault.faults.update({"latency": 1.5, "path_contains": "/items/"})
    client = make_client(timeout=5, total_timeout=1, max_retries=0)
    started = time.monotonic()
    with pytest.raises(OnePasswordUnavailableError, match="total deadline"):
        client.resolve_many({"A": {"opitem": "Knack", "opfield": "prod.appId"}, "B": "op://Team Vault/Canary/secret"})
    assert time.monotonic() - started < 1.4


# ---------------------------------------------------------------------------------------------- 6. containers
def test_containers_with_secrets_are_removed_unless_the_author_opts_out() -> None:
    secrets = {"TOKEN": "op://V/i/f"}
    assert SecretDockerOperator(task_id="a", image="busybox", secrets=secrets).auto_remove == "force"
    assert SecretDockerOperator(task_id="b", image="busybox").auto_remove == "never", "no secrets: DockerOperator's"
    kept = SecretDockerOperator(task_id="c", image="busybox", secrets=secrets, auto_remove="never")
    assert kept.auto_remove == "never", "an explicit choice is kept (and warned about at run time)"


# ---------------------------------------------------------------------------------------------- 7. shapes
class ShapeServer(http.server.ThreadingHTTPServer):
    """A Connect stand-in answering fixed JSON per path (shapes a real Connect would never send); an
    answer given as bytes is sent as it is."""

    def __init__(self, answers: dict[str, Any]):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                answer = answers.get(path, {"status": 404, "message": "nope"})
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200 if path in answers else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


VAULT = {"id": "v" * 26, "name": "V"}
ITEMS = f"/v1/vaults/{'v' * 26}/items"
SHAPES = {
    "vault list is an object": ({"/v1/vaults": {"foo": 1}}, "/v1/vaults"),
    "vault list entry without id": ({"/v1/vaults": [{"name": "V"}]}, "/v1/vaults"),
    "item list is null": ({"/v1/vaults": [VAULT], ITEMS: None}, ITEMS),
    "item list entry without id": ({"/v1/vaults": [VAULT], ITEMS: [{"title": "item"}]}, ITEMS),
    "item is null": ({"/v1/vaults": [VAULT], ITEMS: [{"id": "i" * 26, "title": "item"}], f"{ITEMS}/{'i' * 26}": None},
                     f"{ITEMS}/{'i' * 26}"),
    "item without id": ({"/v1/vaults": [VAULT], ITEMS: [{"id": "i" * 26, "title": "item"}],
                         f"{ITEMS}/{'i' * 26}": {"foo": 1}}, f"{ITEMS}/{'i' * 26}"),
}  # fmt: skip


@pytest.fixture
def shape_server() -> Iterator[Callable[[dict[str, Any]], ShapeServer]]:
    servers: list[ShapeServer] = []

    def start(answers: dict[str, Any]) -> ShapeServer:
        servers.append(ShapeServer(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def shape_client(server: ShapeServer, **settings: Any) -> OnePasswordClient:
    """A client of ``server`` with vault "V" and no retries unless ``settings`` say otherwise."""
    return OnePasswordClient(ConnectSettings(**{"host": server.url, "token": TOKEN, "vault": "V", "max_retries": 0,
                                                **settings}))  # fmt: skip


def lookup_error(server: ShapeServer) -> OnePasswordError:
    """The error the client raises looking up op://V/item/field on ``server`` (no retries)."""
    client = shape_client(server)
    with pytest.raises(OnePasswordError) as raised:
        client.resolve("op://V/item/field")
    return raised.value


@pytest.mark.parametrize("case", SHAPES)
def test_valid_json_of_the_wrong_shape_is_a_onepassword_error_naming_the_endpoint(
    case: str, shape_server: Callable[[dict[str, Any]], ShapeServer], caplog: pytest.LogCaptureFixture
) -> None:
    answers, endpoint = SHAPES[case]
    server = shape_server(answers)
    raised = lookup_error(server)
    assert type(raised) is OnePasswordError and endpoint in str(raised)
    backend = OnePasswordBackend(connect_host=server.url, connect_token=TOKEN, vault="V", connections_prefix="")
    with caplog.at_level("WARNING"):
        assert backend.get_conn_value("item") is None, "the backend logs it and lets Airflow go on"
    assert any(endpoint in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("case", "kind"), [("item list entry without id", "item list"),
                                           ("vault list entry without id", "vault list")])  # fmt: skip
def test_an_entry_without_id_is_described_by_its_json_kind(
    shape_server: Callable[[dict[str, Any]], ShapeServer], case: str, kind: str
) -> None:
    answers, endpoint = SHAPES[case]
    server = shape_server(answers)
    raised = lookup_error(server)
    assert str(raised).endswith(f"answered the {kind} ({endpoint}) with an entry that has no id (an object)")


def test_an_unreadable_item_is_described_by_the_error_type_only(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    server = shape_server(SHAPES["item without id"][0])
    raised = lookup_error(server)
    assert str(raised) == (
        f"1Password Connect at {server.url} answered the item request ({ITEMS}/{'i' * 26}) with an item this "
        "client cannot read (KeyError)"
    )


def test_a_200_that_is_not_json_is_retried_and_reported_without_its_body(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    """A proxy's maintenance page answered with 200: waiting may fix it, and the page is never quoted."""
    server = shape_server({"/v1/vaults": b"<html>maintenance; token in page</html>"})
    raised = lookup_error(server)
    assert type(raised) is OnePasswordUnavailableError
    assert str(raised) == (
        f"1Password Connect at {server.url} is unavailable for the vault list after 1 attempt(s): "
        "HTTP 200 with a body that is not JSON"
    )


def vault_named(shape_server: Callable[[dict[str, Any]], ShapeServer], names: list[str], ask: str) -> str:
    """The vault id the client picks for `ask` among vaults called `names` (ids a..., b..., ...)."""
    vaults = [{"id": chr(ord("a") + n) * 26, "name": name} for n, name in enumerate(names)]
    server = shape_server({"/v1/vaults": vaults, **{f"/v1/vaults/{v['id']}/items": [] for v in vaults}})
    return shape_client(server, vault=None).check_vault(ask)


def test_a_vault_name_matches_exactly_first_then_without_case(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    assert vault_named(shape_server, ["Team", "team"], "team") == "b" * 26, "the exact name wins"
    assert vault_named(shape_server, ["Team", "team"], "Team") == "a" * 26
    assert vault_named(shape_server, ["Team Vault"], "team vault") == "a" * 26, "one name equal but for case"
    with pytest.raises(OnePasswordError) as raised:
        vault_named(shape_server, ["Team", "TEAM"], "team")
    assert str(raised.value) == "2 vaults are named 'team'; address the vault by id"


def test_a_listed_vault_whose_items_cannot_be_listed_is_not_found_by_the_name_asked(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    raised = lookup_error(shape_server({"/v1/vaults": [VAULT]}))  # its item list answers 404
    assert type(raised) is VaultNotFoundError
    assert str(raised) == "1Password vault 'V' not found or not shared with this Connect token."


def test_a_vault_unshared_after_its_index_was_built_is_not_found_by_the_name_asked(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    """A lookup of an item the index lacks re-lists the vault; a 404 then names the vault as the DAG does."""
    answers: dict[str, Any] = {"/v1/vaults": [VAULT], ITEMS: [{"id": "i" * 26, "title": "item"}]}
    server = shape_server(answers)
    client = shape_client(server, index_refresh_interval=0)
    client.check_vault()
    del answers[ITEMS]  # the vault is deleted, or no longer shared with the token
    with pytest.raises(VaultNotFoundError) as raised:
        client.resolve("op://V/new item/field")
    assert str(raised.value) == "1Password vault 'V' not found or not shared with this Connect token."


def test_an_item_gone_between_list_and_fetch_is_not_found_with_the_cache_off(
    shape_server: Callable[[dict[str, Any]], ShapeServer],
) -> None:
    """With cache_ttl=0 no index is kept to forget after the item's 404: still the item's not-found error."""
    server = shape_server({"/v1/vaults": [VAULT], ITEMS: [{"id": "i" * 26, "title": "item"}]})
    client = shape_client(server, cache_ttl=0)
    with pytest.raises(ItemNotFoundError) as raised:
        client.resolve("op://V/item/field")
    assert str(raised.value) == f"1Password item {'i' * 26!r} not found in vault {'v' * 26!r}."


def test_trashed_items_of_an_item_list_are_skipped(shape_server: Callable[[dict[str, Any]], ShapeServer]) -> None:
    """Connect may list an item in the trash under the same title as a live one: only the live one counts."""
    live = {"id": "i" * 26, "title": "item", "vault": {"id": "v" * 26},
            "fields": [{"id": "field", "label": "field", "type": "CONCEALED", "value": "the-live-value"}]}  # fmt: skip
    trashed = {"id": "t" * 26, "title": "item", "trashed": True}
    server = shape_server({"/v1/vaults": [VAULT], ITEMS: [trashed, live], f"{ITEMS}/{'i' * 26}": live})
    client = shape_client(server)
    assert client.resolve("op://V/item/field") == "the-live-value"
    with pytest.raises(ItemNotFoundError) as raised:
        client.resolve(f"op://V/{'t' * 26}/field")  # nor is it found by its id: not even asked for
    assert str(raised.value) == f"1Password item {'t' * 26!r} not found in vault 'V'."


# ---------------------------------------------------------------------------------------------- 8. messages
def test_a_huge_item_name_makes_a_short_error(make_client: Any) -> None:
    client = make_client()
    with pytest.raises(OnePasswordError) as raised:
        client.resolve({"opitem": "x" * 1_000_000, "opfield": "f"})
    assert len(str(raised.value)) < 600


def test_a_huge_secret_name_makes_a_short_parse_error() -> None:
    with pytest.raises(OnePasswordError) as raised:
        SecretDockerOperator(task_id="t", image="busybox", secrets={"1" * 1_000_000: "op://V/i/f"})
    assert len(str(raised.value)) < 600


def test_user_info_in_the_connect_url_never_reaches_a_message() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ConnectSettings(
        host=f"http://ann:hunter2-secret@127.0.0.1:{port}", token=TOKEN, vault="V", max_retries=0
    )
    client = OnePasswordClient(settings)
    with pytest.raises(OnePasswordUnavailableError) as raised:
        client.resolve("op://V/i/f")
    shown = [str(raised.value), repr(settings), repr(client)]
    assert all("hunter2-secret" not in text and "ann:" not in text for text in shown), shown
    assert f"http://127.0.0.1:{port}" in str(raised.value)
    with pytest.raises(OnePasswordConfigError) as no_scheme:
        ConnectSettings(host="ann:hunter2-secret@op-connect:8080", token=TOKEN)
    assert "hunter2-secret" not in str(no_scheme.value)


def test_hook_connection_test_message_has_no_user_info(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {"conn_type": "onepassword", "host": f"http://ann:hunter2-secret@127.0.0.1:{port}", "password": TOKEN,
            "extra": {"max_retries": 0}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_OP_USERINFO", json.dumps(conn))
    ok, message = OnePasswordHook("op_userinfo").test_connection()
    assert not ok and "hunter2-secret" not in message and "127.0.0.1" in message


def test_a_dotted_field_label_gets_a_hint_to_use_an_op_reference(make_client: Any) -> None:
    client = make_client()
    with pytest.raises(FieldNotFoundError, match=r"op://Team Vault/Dotted Label/api\.token"):
        client.resolve({"opitem": "Dotted Label", "opfield": "api.token"})
    assert client.resolve("op://Team Vault/Dotted Label/api.token") == "dotted-no-section-token"


# ---------------------------------------------------------------------------------------------- XCom guard
@dataclass
class Report:  # a value serde turns into a dict of strings
    note: str
    rows: list[str]


def test_xcom_backend_replaces_every_known_secret_before_storing(clean_masker: Masked) -> None:
    mask("XCOM-CANARY-0f9e-do-not-store")
    value = {
        "last_line": "token=XCOM-CANARY-0f9e-do-not-store",
        "XCOM-CANARY-0f9e-do-not-store": [1, ("XCOM-CANARY-0f9e-do-not-store", None)],
        "count": 3,
        "note": "nothing secret here",
    }
    stored = SecretMaskingXComBackend.serialize_value(value, key="return_value", task_id="t", dag_id="d", run_id="r")
    assert "XCOM-CANARY" not in json.dumps(stored)
    assert stored["last_line"] == "token=***" and stored["count"] == 3 and stored["note"] == "nothing secret here"
    report = SecretMaskingXComBackend.serialize_value(Report("XCOM-CANARY-0f9e-do-not-store", ["ok"]))
    assert "XCOM-CANARY" not in json.dumps(report) and "ok" in json.dumps(report)


def test_xcom_backend_leaves_values_unchanged_when_nothing_is_secret(clean_masker: Masked) -> None:
    value = {"token": "not-a-known-value", "rows": [1, 2, 3]}
    assert SecretMaskingXComBackend.serialize_value(value) == value, "no guessing by key names"


PREFIX_GUARD = """
import json, sys
from airflow_dts_provider._onepassword.masking import mask
from airflow_dts_provider.xcom.backend import SecretMaskingXComBackend
mask("PREFIX-SECRET-4c1d")
mask("PREFIX-SECRET-4c1d:9f8e7d6c5b4a-TAIL")
print(json.dumps(SecretMaskingXComBackend.serialize_value("token=PREFIX-SECRET-4c1d:9f8e7d6c5b4a-TAIL!")))
"""


def test_xcom_guard_masks_the_longer_of_two_secrets_whole_whatever_the_hash_seed() -> None:
    """Airflow joins its patterns from a set: with one secret a prefix of another the order is the hash seed's."""
    stored = {
        seed: subprocess.run(
            [sys.executable, "-c", PREFIX_GUARD],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(6)
    }
    assert stored == dict.fromkeys(range(6), '"token=***!"')
