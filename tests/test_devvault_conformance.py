"""The dev vault against the 1Password Connect API reference: every documented read route and error
case, each response checked against the reference's schema (written here from the reference: Vault,
Item, FullItem, ErrorResponse, APIRequest), plus the official SDK's round trip and the safety limits.

Shapes come from the Connect API reference (support.1password.com/connect-api-reference, spec 1.7/1.8).
Status codes for malformed ids (400 "Invalid Vault/Item UUID") come from Connect's own logs quoted in
1Password/connect#45 and onepassword-operator#132; a well-formed unknown id is the reference's 404.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from onepasswordconnectsdk.client import FailedToRetrieveItemException, new_client

from airflow_dts_provider.devvault import DevVaultServer, VaultData
from airflow_dts_provider.devvault.server import MAX_BODY
from airflow_dts_provider.devvault.store import VaultFileError
from tests.conftest import TOKEN, item_ids, vault_id

UUID = {"type": "string", "pattern": "^[a-z0-9]{26}$"}
TIME = {"type": "string", "format": "date-time"}
ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    "additionalProperties": False,
}
VAULT = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {
        "id": UUID, "name": {"type": "string"}, "description": {"type": "string"},
        "attributeVersion": {"type": "integer"}, "contentVersion": {"type": "integer"}, "items": {"type": "integer"},
        "type": {"enum": ["USER_CREATED", "PERSONAL", "EVERYONE", "TRANSFER"]}, "createdAt": TIME, "updatedAt": TIME,
    },
    "additionalProperties": False,
}  # fmt: skip
URL = {
    "type": "object",
    "required": ["href"],
    "properties": {"href": {"type": "string"}, "label": {"type": "string"}, "primary": {"type": "boolean"}},
    "additionalProperties": False,
}
ITEM_PROPERTIES: dict[str, Any] = {
    "id": UUID, "title": {"type": "string"},
    "vault": {"type": "object", "required": ["id"], "properties": {"id": UUID}},
    "category": {"type": "string"}, "urls": {"type": "array", "items": URL},
    "favorite": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
    "version": {"type": "integer"}, "trashed": {"type": "boolean"}, "createdAt": TIME, "updatedAt": TIME,
    "lastEditedBy": UUID,
}  # fmt: skip
ITEM = {
    "type": "object",
    "required": ["id", "vault", "category"],
    "properties": ITEM_PROPERTIES,
    "additionalProperties": False,
}
FIELD = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string"}, "label": {"type": "string"}, "type": {"type": "string"},
        "purpose": {"enum": ["", "USERNAME", "PASSWORD", "NOTES"]}, "value": {"type": "string"},
        "section": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        "totp": {"type": "string"}, "entropy": {"type": "number"},
    },
    "additionalProperties": False,
}  # fmt: skip
FULL_ITEM = {
    "type": "object",
    "required": ["id", "vault", "category"],
    "properties": {
        **ITEM_PROPERTIES,
        "sections": {"type": "array", "items": {"type": "object", "required": ["id"],
                                                "properties": {"id": {"type": "string"}, "label": {"type": "string"}}}},
        "fields": {"type": "array", "items": FIELD},
        "files": {"type": "array"},
    },
    "additionalProperties": False,
}  # fmt: skip
API_REQUEST = {
    "type": "object",
    "required": ["requestId", "timestamp", "action", "result", "actor", "resource"],
    "properties": {
        "requestId": {"type": "string", "format": "uuid"}, "timestamp": TIME,
        "action": {"enum": ["READ", "CREATE", "UPDATE", "DELETE"]}, "result": {"enum": ["SUCCESS", "DENY"]},
        "actor": {"type": "object", "properties": {k: {"type": "string"} for k in
                                                   ("id", "account", "jti", "userAgent", "requestIp")}},
        "resource": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["ITEM", "VAULT"]}, "vault": {"type": "object"}, "item": {"type": "object"},
            "itemVersion": {"type": "integer"}}},
    },
    "additionalProperties": False,
}  # fmt: skip


def array_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


@pytest.fixture
def api(devvault: DevVaultServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devvault.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as client:
        yield client


def check(response: httpx.Response, status: int, schema: dict[str, Any]) -> Any:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    return body


def test_every_read_route_answers_the_documented_shape(api: httpx.Client, vault_data: VaultData) -> None:
    vaults = check(api.get("/v1/vaults"), 200, array_of(VAULT))
    assert {v["name"] for v in vaults} >= {"Team Vault", "DTS Dev"}
    (dev,) = check(api.get("/v1/vaults", params={"filter": 'name eq "DTS Dev"'}), 200, array_of(VAULT))
    check(api.get(f"/v1/vaults/{dev['id']}"), 200, VAULT)
    items = check(api.get(f"/v1/vaults/{dev['id']}/items"), 200, array_of(ITEM))
    assert len(items) == dev["items"]
    (socrata,) = check(
        api.get(f"/v1/vaults/{dev['id']}/items", params={"filter": 'title eq "Socrata Open Data"'}), 200, array_of(ITEM)
    )
    assert socrata["urls"][0] == {"primary": True, "href": "https://data.example.invalid"}
    tagged = check(api.get(f"/v1/vaults/{dev['id']}/items", params={"filter": 'tag eq "socrata"'}), 200, array_of(ITEM))
    assert [i["title"] for i in tagged] == ["Socrata Open Data"]
    full = check(api.get(f"/v1/vaults/{dev['id']}/items/{socrata['id']}"), 200, FULL_ITEM)
    assert full["tags"] == ["socrata", "publishing"] and len(full["urls"]) == 2
    activity = check(api.get("/v1/activity", params={"limit": 3}), 200, array_of(API_REQUEST))
    # newest first: this very request, then the item read just before it
    assert len(activity) == 3 and activity[1]["resource"]["item"]["id"] == socrata["id"]
    team = vault_id(vault_data, "Team Vault")
    (quoted,) = item_ids(vault_data, "Team Vault", "A+B & C #1")
    found = api.get(f"/v1/vaults/{team}/items", params={"filter": 'title eq "A+B & C #1"'})
    assert [i["id"] for i in check(found, 200, array_of(ITEM))] == [quoted], "an encoded filter finds odd titles"


def test_open_routes_need_no_token(devvault: DevVaultServer) -> None:
    assert httpx.get(f"{devvault.url}/heartbeat").text == "."
    health = httpx.get(f"{devvault.url}/health").json()
    assert set(health) == {"name", "version", "dependencies"}
    metrics = httpx.get(f"{devvault.url}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE devvault_requests_total counter" in metrics.text


BAD_FILTERS = [
    ("/v1/vaults", 'title eq "DTS Dev"'),  # vaults are filtered by name only
    ("/v1/vaults", "name eq DTS"),  # unquoted
    ("/v1/vaults", ""),  # empty
    ("/v1/vaults", 'name co "DTS"'),  # an operator other than eq
    ("ITEMS", 'title = "Knack"'),
    ("ITEMS", 'name eq "Knack"'),  # items are filtered by title or tag
    ("ITEMS", 'title eq "A+B '),  # what the SDK sends for 'A+B & C #1': cut at the unencoded '&'
    ("ITEMS", 'title eq "Knack" and tag eq "x"'),
]


@pytest.mark.parametrize(("route", "query"), BAD_FILTERS)
def test_filters_connect_rejects_are_rejected(api: httpx.Client, vault_data: VaultData, route: str, query: str) -> None:
    path = f"/v1/vaults/{vault_id(vault_data, 'Team Vault')}/items" if route == "ITEMS" else route
    body = check(api.get(path, params={"filter": query}), 400, ERROR)
    assert "Invalid filter" in body["message"]


def test_error_cases(api: httpx.Client, devvault: DevVaultServer, vault_data: VaultData) -> None:
    team = vault_id(vault_data, "Team Vault")
    assert check(api.get("/v1/vaults/not-a-vault-id/items"), 400, ERROR)["message"] == "Invalid Vault UUID"
    assert check(api.get(f"/v1/vaults/{'z' * 26}"), 404, ERROR)["status"] == 404
    assert check(api.get(f"/v1/vaults/{team}/items/Knack"), 400, ERROR)["message"] == "Invalid Item UUID"
    assert check(api.get(f"/v1/vaults/{team}/items/{'z' * 26}"), 404, ERROR)["message"] == "item not found"
    assert check(api.get("/v1/nothing-here"), 404, ERROR)["status"] == 404
    for token in ("", "Bearer wrong", f"Bearer {TOKEN}x", f"bearer {TOKEN}"):
        refused = httpx.get(f"{devvault.url}/v1/vaults", headers={"Authorization": token} if token else {})
        assert check(refused, 401, ERROR)["message"] == "Invalid token signature"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_are_refused_token_first_then_405(method: str, devvault: DevVaultServer, vault_data: VaultData) -> None:
    team = vault_id(vault_data, "Team Vault")
    (knack,) = item_ids(vault_data, "Team Vault", "Knack")
    path = f"{devvault.url}/v1/vaults/{team}/items/{knack}"
    without = httpx.request(method, path, json={"title": "x"})
    assert check(without, 401, ERROR)["status"] == 401
    with_token = httpx.request(method, path, json={"title": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert "read-only" in check(with_token, 405, ERROR)["message"]


def test_sdk_round_trip(devvault: DevVaultServer, vault_data: VaultData) -> None:
    sdk = new_client(devvault.url, TOKEN)
    vaults = {v.name: v.id for v in sdk.get_vaults()}
    assert vaults["Team Vault"] == vault_id(vault_data, "Team Vault")
    assert sdk.get_vault(vaults["Team Vault"]).name == "Team Vault"
    assert sdk.get_vault_by_title("DTS Dev").id == vaults["DTS Dev"]
    titles = {i.title for i in sdk.get_items(vaults["Team Vault"])}
    assert {"Knack", "A+B & C #1"} <= titles
    knack = sdk.get_item_by_title("Knack", vaults["Team Vault"])
    assert sdk.get_item_by_id(knack.id, vaults["Team Vault"]).title == "Knack"
    with pytest.raises(FailedToRetrieveItemException):  # as against Connect: the SDK cuts the filter at '&'
        sdk.get_item_by_title("A+B & C #1", vaults["Team Vault"])


# ------------------------------------------------------------------------------------- safe to leave running
def raw_request(devvault: DevVaultServer, head: str, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send raw request bytes; return what the server answered before closing, and how long it took."""
    host, port = devvault.server_address[:2]
    started = time.monotonic()
    with socket.create_connection((str(host), int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def test_unauthenticated_body_is_never_read(devvault: DevVaultServer) -> None:
    """400 MiB announced, none sent: the 401 comes at once and the connection closes."""
    answer, took = raw_request(devvault, "POST /v1/vaults HTTP/1.1\r\nHost: x\r\nContent-Length: 419430400\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and took < 2


@pytest.mark.parametrize(("length", "status"), [("-1", b"400"), ("abc", b"400"), (str(MAX_BODY + 1), b"413")])
def test_bad_or_huge_content_length_is_refused(devvault: DevVaultServer, length: str, status: bytes) -> None:
    head = f"POST /v1/vaults HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    answer, took = raw_request(devvault, head)
    assert answer.startswith(b"HTTP/1.1 " + status) and took < 2
    assert b'"message"' in answer, "a JSON error, not a dropped connection"


def test_idle_connections_time_out(vault_data: VaultData) -> None:
    server = DevVaultServer(vault_data, token=TOKEN, idle_timeout=1.0).start()
    try:
        answer, took = raw_request(server, "", timeout=10)  # connect and say nothing
    finally:
        server.stop()
    assert answer == b"" and 0.8 < took < 5


def test_a_vault_file_that_is_not_utf8_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "vault.yaml"
    bad.write_bytes("vaults:\n  - name: Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(VaultFileError) as raised:
        VaultData.load(bad)
    assert str(bad) in str(raised.value) and "UTF-8" in str(raised.value) and "\n" not in str(raised.value)
