"""The dev vault speaks Connect's API well enough for the official SDK, unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import onepasswordconnectsdk
import pytest
from onepasswordconnectsdk.client import new_client
from onepasswordconnectsdk.errors import FailedToRetrieveItemException

from airflow_dts_provider.devvault import DevVaultServer, VaultData, VaultFileError
from tests.conftest import TOKEN, VAULT_FILE, item_ids, vault_id


def test_sdk_reads_vaults_and_items(devvault: DevVaultServer, vault_data: VaultData) -> None:
    sdk = new_client(devvault.url, TOKEN)
    vaults = sdk.get_vaults()
    assert {v.name for v in vaults} == {v["name"] for v in vault_data.vaults}
    assert {"Team Vault", "Other Vault", "abcdefghijklmnopqrstuvwxyz", "DTS Dev"} <= {v.name for v in vaults}
    assert sdk.get_vault_by_title("Other Vault").id == vault_id(vault_data, "Other Vault")
    team = vault_id(vault_data, "Team Vault")
    assert sdk.get_vault(team).items == len([i for i in vault_data.items[team]])
    item = sdk.get_item("Knack", "Team Vault")
    assert item.id == item_ids(vault_data, "Team Vault", "Knack")[0]
    assert {s.label for s in item.sections} == {"prod", "test"}
    assert any(f.label == "apiKey" and f.type == "CONCEALED" for f in item.fields)
    summaries = sdk.get_items(team)
    assert "Trashed Item" not in {s.title for s in summaries}


def test_sdk_load_dict_works_unchanged(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_VAULT", "Team Vault")
    sdk = new_client(devvault.url, TOKEN)
    values = onepasswordconnectsdk.load_dict(
        sdk, {"APP": {"opitem": "Knack", "opfield": "prod.appId"}, "KEY": {"opitem": "Knack", "opfield": "test.apiKey"}}
    )
    assert values == {"APP": "knack-prod-app", "KEY": "knack-test-key"}


def test_sdk_title_lookup_bugs_reproduce(devvault: DevVaultServer) -> None:
    """The measured SDK 2.1.1 facts our client avoids: '+' becomes a space, '&' and '#' cut the filter."""
    sdk = new_client(devvault.url, TOKEN)
    assert sdk.get_item("A+B", "Team Vault").title == "A B"  # the wrong item...
    with pytest.raises(FailedToRetrieveItemException):
        sdk.get_item("A+B & C #1", "Team Vault")  # ...or fails outright


def test_sdk_loose_section_matching_reproduces(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_dict matches 'anything.notes' to a field that has no section: we do not."""
    monkeypatch.setenv("OP_VAULT", "Team Vault")
    sdk = new_client(devvault.url, TOKEN)
    loose = onepasswordconnectsdk.load_dict(sdk, {"N": {"opitem": "Knack", "opfield": "nonsense.notes"}})
    assert loose == {"N": "knack-notes-no-section"}


def test_token_required(devvault: DevVaultServer) -> None:
    response = httpx.get(f"{devvault.url}/v1/vaults", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json() == {"status": 401, "message": "Invalid token signature"}
    assert httpx.get(f"{devvault.url}/v1/vaults").status_code == 401
    assert httpx.get(f"{devvault.url}/heartbeat").text == "."  # like Connect: no token needed
    assert httpx.get(f"{devvault.url}/health").json()["version"] == "1.7.1"


def test_errors_are_connect_shaped(devvault: DevVaultServer, vault_data: VaultData) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    missing = httpx.get(f"{devvault.url}/v1/vaults/{'z' * 26}/items", headers=headers)
    assert missing.status_code == 404 and set(missing.json()) == {"status", "message"}
    team = vault_id(vault_data, "Team Vault")
    item = httpx.get(f"{devvault.url}/v1/vaults/{team}/items/{'z' * 26}", headers=headers)
    assert item.status_code == 404 and item.json()["status"] == 404


def test_ids_are_stable_and_well_formed(vault_data: VaultData) -> None:
    again = VaultData.load(VAULT_FILE)
    assert again.vaults == vault_data.vaults[: len(again.vaults)]
    assert all(again.items[v["id"]] == vault_data.items[v["id"]] for v in again.vaults)
    ids = [v["id"] for v in vault_data.vaults] + [i["id"] for items in vault_data.items.values() for i in items]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and i.isalnum() and i == i.lower() for i in ids)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"vault": []}, "expected a mapping with a 'vaults' list"),
        ({"vaults": [{"name": "V", "items": [{"title": "T", "fields": [{"label": "x", "type": "SECRET"}]}]}]},
         r"vaults\[0\].items\[0\].fields\[0\]: type must be one of"),
        ({"vaults": [{"name": "V", "items": [{"title": "T", "colour": "red"}]}]}, r"unknown key\(s\) \['colour'\]"),
        ({"vaults": [{"items": []}]}, "'name' is required"),
        ({"vaults": [{"name": "V", "type": "SHARED"}]}, "type must be one of"),
    ],
)  # fmt: skip
def test_bad_vault_file_is_reported_with_its_location(raw: object, message: str) -> None:
    with pytest.raises(VaultFileError, match=message):
        VaultData.from_dict(raw)


def test_admin_routes(devvault: DevVaultServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    httpx.get(f"{devvault.url}/v1/vaults", headers=headers)
    assert httpx.get(f"{devvault.url}/__devvault/stats", headers=headers).json()["by_kind"] == {"vault list": 1}
    httpx.post(f"{devvault.url}/__devvault/faults", headers=headers, json={"fail_status": 503, "fail_count": 1})
    assert httpx.get(f"{devvault.url}/v1/vaults", headers=headers).status_code == 503
    assert httpx.get(f"{devvault.url}/v1/vaults", headers=headers).status_code == 200
    assert httpx.get(f"{devvault.url}/__devvault/stats").status_code == 401
    httpx.post(f"{devvault.url}/__devvault/reset", headers=headers)
    assert devvault.request_count == 0


def test_cli_serves_the_bundled_sample_vault(tmp_path: Path) -> None:
    env = {**os.environ, "DEVVAULT_TOKEN": "cli-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_dts_provider.devvault", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "DTS Dev" in line, line
        url = line.rsplit(" on ", 1)[1].strip()
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(f"{url}/v1/vaults", headers={"Authorization": "Bearer cli-token"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.json()[0]["name"] == "DTS Dev"
        assert "cli-token" not in line
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_rejects_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "vault.yaml"
    bad.write_text("vaults: [{name: V, items: [{title: T, fields: [{label: x, purpose: SECRET}]}]}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "airflow_dts_provider.devvault", "--file", str(bad), "--token", "t"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "purpose must be one of" in result.stderr


def test_refused_requests_are_counted_not_kept_and_the_log_is_bounded() -> None:
    """Issue 30, finding 3: 1,500 unauthenticated requests grew the server by 86 MiB, never freed."""
    from airflow_dts_provider.devvault.server import MAX_LOGGED

    server = DevVaultServer(VaultData.load(VAULT_FILE), token=TOKEN).start()
    try:
        for _ in range(300):  # a refusal closes the connection: a new one each time
            assert httpx.get(f"{server.url}/v1/vaults", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert len(server.request_log) == 0 and server.refused == 300 and server.request_count == 300
        for n in range(MAX_LOGGED + 50):
            server.record("GET", f"/v1/vaults/{n}")  # what an answered request records
        assert len(server.request_log) == MAX_LOGGED
        assert server.request_log[-1] == ("GET", f"/v1/vaults/{MAX_LOGGED + 49}")
    finally:
        server.stop()


def test_a_non_ascii_digit_content_length_is_a_400_not_a_traceback() -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the handler died without an answer."""
    import socket

    server = DevVaultServer(VaultData.load(VAULT_FILE), token=TOKEN).start()
    try:
        host, port = server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=10) as sock:
            sock.sendall(  # b"\xb2" is "²" in Latin-1, the encoding http.server reads headers in
                f"POST /v1/vaults HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
                + b"Content-Length: \xb2\r\n\r\n"
            )
            chunks = []
            while chunk := sock.recv(4096):  # the server closes the connection after a 400
                chunks.append(chunk)
            answer = b"".join(chunks).decode(errors="replace")
        assert answer.startswith("HTTP/1.0 400") or answer.startswith("HTTP/1.1 400"), answer[:200]
        assert "Invalid Content-Length" in answer
    finally:
        server.stop()


def test_activity_entries_have_the_request_time_and_a_uuid_actor(devvault: DevVaultServer) -> None:
    import uuid
    from datetime import datetime, timezone

    before = datetime.now(timezone.utc).replace(microsecond=0)
    with httpx.Client(base_url=devvault.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        api.get("/v1/vaults")
        entry = api.get("/v1/activity", params={"limit": 1}).json()[0]
    uuid.UUID(entry["actor"]["id"])
    at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    assert before <= at <= datetime.now(timezone.utc)
