"""A 1Password Connect API (v1 subset) server over a local vault file, with fault injection.

It serves exactly what our client and the official SDK use, with Connect's shapes and errors,
so DAG authors can work without 1Password access and tests can exercise the real HTTP path.
Extra routes under ``/__devvault/`` (same bearer token) count requests and inject faults.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_dts_provider.devvault.store import VaultData

CONNECT_VERSION = "1.7.1"
_FILTER_RE = re.compile(r'^\s*(?P<attr>title|name)\s+eq\s+"(?P<value>.*)"\s*$', re.DOTALL)
ADMIN_PREFIX = "/__devvault/"


@dataclass
class FaultPlan:
    """Faults applied to Connect routes (not to the admin routes)."""

    latency: float = 0.0
    fail_status: int = 0
    fail_count: int = 0
    fail_body: str = "json"  # json | text | empty
    retry_after: float | None = None
    drop_count: int = 0
    path_contains: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, path: str) -> tuple[str, int]:
        """Decide this request's fate: ("drop"|"fail"|"ok", status)."""
        with self.lock:
            if self.path_contains and self.path_contains not in path:
                return "ok", 0
            if self.drop_count > 0:
                self.drop_count -= 1
                return "drop", 0
            if self.fail_count > 0:
                self.fail_count -= 1
                return "fail", self.fail_status
        return "ok", 0

    def update(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.latency = float(spec.get("latency", self.latency))
            if "fail_status" in spec:
                self.fail_status = int(spec["fail_status"])
                self.fail_count = int(spec.get("fail_count", 1))
            self.fail_body = str(spec.get("fail_body", self.fail_body))
            if "retry_after" in spec:
                self.retry_after = None if spec["retry_after"] is None else float(spec["retry_after"])
            self.drop_count = int(spec.get("drop_count", self.drop_count))
            self.path_contains = str(spec.get("path_contains", self.path_contains))

    def clear(self) -> None:
        self.update(
            {
                "latency": 0.0,
                "fail_status": 0,
                "fail_count": 0,
                "fail_body": "json",
                "retry_after": None,
                "drop_count": 0,
                "path_contains": "",
            }
        )


class DevVaultServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, data: VaultData, token: str, host: str = "127.0.0.1", port: int = 0):
        if not token:
            raise ValueError("the dev vault needs a token: clients must send 'Authorization: Bearer <token>'")
        self.data = data
        self.token = token
        self.faults = FaultPlan()
        self.request_log: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (a killed process, a timeout) is not the server's error."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- request accounting, for tests and benchmarks
    def record(self, method: str, path: str) -> None:
        with self._log_lock:
            self.request_log.append((method, path))

    @property
    def request_count(self) -> int:
        with self._log_lock:
            return len(self.request_log)

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            kinds = Counter(_route_kind(p) for _, p in self.request_log)
            return {"requests": len(self.request_log), "by_kind": dict(kinds)}

    def reset_counts(self) -> None:
        with self._log_lock:
            self.request_log.clear()

    def reset(self) -> None:
        """Forget counted requests and clear all faults."""
        self.reset_counts()
        self.faults.clear()

    # -- running in a background thread (tests, the README's dev command)
    def start(self) -> DevVaultServer:
        self._thread = threading.Thread(target=self.serve_forever, name="devvault", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _route_kind(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts[:1] != ["v1"]:
        return parts[0] if parts else "root"
    return {1: "vault list", 2: "vault", 3: "item list", 4: "item"}.get(len(parts) - 1, "other")


class _Handler(BaseHTTPRequestHandler):
    server: DevVaultServer
    protocol_version = "HTTP/1.1"
    server_version = "1PasswordConnect-devvault/" + CONNECT_VERSION

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests count requests instead
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""  # always drained: keep-alive stays in sync
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query)  # like Connect's Go server, '+' decodes to a space
        if path.startswith(ADMIN_PREFIX):
            if self._authorized():
                self._admin(method, path[len(ADMIN_PREFIX) :])
            return
        self.server.record(method, path)
        faults = self.server.faults
        if faults.latency:
            time.sleep(faults.latency)
        fate, status = faults.take(path)
        if fate == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fate == "fail":
            self._fail(status)
            return
        if path == "/heartbeat":
            self._send(200, b".", "text/plain")
            return
        if path == "/health":
            self._json(200, {"name": "1Password Connect API", "version": CONNECT_VERSION, "dependencies": []})
            return
        if not self._authorized():
            return
        if method != "GET":
            self._error(405, "Method not allowed on the dev vault (read-only)")
            return
        self._connect_api([unquote(p) for p in path.split("/") if p], query)

    def _connect_api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        data = self.server.data
        if parts[:2] != ["v1", "vaults"] or len(parts) > 5 or (len(parts) >= 4 and parts[3] != "items"):
            self._error(404, "Not found")
            return
        if len(parts) == 2:
            vaults = data.vaults
            wanted = _filter(query, "name")
            if wanted is not None:
                vaults = [v for v in vaults if v["name"] == wanted]
            self._json(200, vaults)
            return
        vault = next((v for v in data.vaults if v["id"] == parts[2]), None)
        if vault is None:
            self._error(404, f"vault {parts[2]} not found")
            return
        if len(parts) == 3:
            self._json(200, vault)
            return
        items = [i for i in data.items[vault["id"]] if not i["trashed"]]
        if len(parts) == 4:
            wanted = _filter(query, "title")
            if wanted is not None:
                items = [i for i in items if i["title"] == wanted]
            self._json(200, [data.summary(i) for i in items])
            return
        item = next((i for i in items if i["id"] == parts[4]), None)
        if item is None:
            self._error(404, "Invalid Item UUID")
            return
        self._json(200, item)

    def _admin(self, method: str, route: str) -> None:
        if route == "stats" and method == "GET":
            self._json(200, self.server.stats())
        elif route == "reset" and method == "POST":
            self.server.reset()
            self._json(200, {"ok": True})
        elif route == "faults" and method == "POST":
            try:
                self.server.faults.update(json.loads(self.body or b"{}"))
            except (ValueError, TypeError) as err:
                self._error(400, f"bad fault spec: {err}")
                return
            self._json(200, {"ok": True})
        else:
            self._error(404, f"unknown admin route {method} {route}")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if header == f"Bearer {self.server.token}":
            return True
        self._error(401, "Invalid token signature")
        return False

    def _fail(self, status: int) -> None:
        faults = self.server.faults
        headers = {}
        if faults.retry_after is not None:
            headers["Retry-After"] = f"{faults.retry_after:g}"
        if faults.fail_body == "text":
            self._send(status, b"<html><body>upstream error</body></html>", "text/html", headers)
        elif faults.fail_body == "empty":
            self._send(status, b"", "text/plain", headers)
        else:
            self._json(status, {"status": status, "message": "injected fault"}, headers)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"status": status, "message": message})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _filter(query: dict[str, list[str]], attribute: str) -> str | None:
    raw = query.get("filter")
    if not raw:
        return None
    match = _FILTER_RE.match(raw[0])
    if not match or match.group("attr") != attribute:
        return "\x00no-match"  # Connect answers an empty list for filters it cannot use
    return match.group("value")
