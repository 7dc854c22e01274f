"""A 1Password Connect API (v1, read-only) server over a local vault file, with fault injection.

It serves Connect's read routes with Connect's shapes and errors, as strictly as Connect (a filter
Connect rejects is rejected here too), so what works against it works against a real Connect
server, and DAG authors can work without 1Password access. It is read-only: every write method
answers 405 after the token check. Safe to leave running: the token is checked before a body is
read, bodies are capped, ``Content-Length`` is validated and idle connections time out.
Extra routes under ``/__devvault/`` (same bearer token) count requests and inject faults.
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_dts_provider.devvault.store import VaultData

CONNECT_VERSION = "1.7.1"
#: Connect's SCIM subset: ``<attribute> eq "<value>"``, nothing else (no other operator, no unquoted value).
_FILTER_RE = re.compile(r'^(?P<attr>[A-Za-z]+) eq "(?P<value>(?:[^"\\]|\\.)*)"$', re.DOTALL)
#: Which attributes each collection can be filtered by (Connect API reference).
FILTERABLE = {"vaults": ("name",), "items": ("title", "tag")}
#: 1Password ids: 26 characters of [a-z0-9]. Connect answers 400 "Invalid Vault/Item UUID" for anything
#: else (seen in Connect's logs, e.g. 1Password/connect#45 and onepassword-operator#132, and the JS SDK's
#: #29), and 404 for a well-formed id it does not have (the API reference's "404 Item not found").
_UUID_RE = re.compile(r"^[a-z0-9]{26}$")
ADMIN_PREFIX = "/__devvault/"
#: Largest request body read (the dev vault needs none: it is read-only); bigger ones get a 413.
MAX_BODY = 64 * 1024
#: Requests kept for /metrics, /v1/activity and tests: the newest only, so memory stays bounded.
MAX_LOGGED = 10_000
#: The one actor of the dev vault's activity entries (Connect's spec: a UUID).
ACTOR_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "devvault"))
#: Seconds an idle (keep-alive or silent) connection is kept before it is closed.
IDLE_TIMEOUT = 30.0


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

    def __init__(
        self, data: VaultData, token: str, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = IDLE_TIMEOUT
    ):
        if not token:
            raise ValueError("the dev vault needs a token: clients must send 'Authorization: Bearer <token>'")
        self.data = data
        self.token = token
        self.idle_timeout = idle_timeout
        self.faults = FaultPlan()
        self.request_log: deque[tuple[str, str]] = deque(maxlen=MAX_LOGGED)
        self._request_times: deque[float] = deque(maxlen=MAX_LOGGED)
        self.requests_total = 0  # every request, refused ones too (only counted, never kept)
        self.refused = 0
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
    def record(self, method: str, path: str, refused: bool = False) -> None:
        """Count a request; keep it (the newest ``MAX_LOGGED``) unless it was refused.

        A refused request (no or a wrong token) is only counted: anyone can send those, and keeping
        them let an unauthenticated client grow the server's memory without bound.
        """
        with self._log_lock:
            self.requests_total += 1
            if refused:
                self.refused += 1
                return
            self.request_log.append((method, path))
            self._request_times.append(time.time())

    @property
    def request_count(self) -> int:
        """Requests received, refused ones included (tests count a client's retries of a bad token)."""
        with self._log_lock:
            return self.requests_total

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            kinds = Counter(_route_kind(p) for _, p in self.request_log)
            return {"requests": self.requests_total, "refused": self.refused, "by_kind": dict(kinds)}

    def activity(self) -> list[dict[str, Any]]:
        """Connect API requests answered (the newest kept), shaped as ``GET /v1/activity``, newest first."""
        with self._log_lock:
            log = list(zip(self.request_log, self._request_times, strict=True))
        entries = []
        for n, ((method, path), at) in enumerate(reversed(log)):
            parts = [p for p in path.split("/") if p]
            resource: dict[str, Any] = {"type": "ITEM" if len(parts) >= 5 else "VAULT"}
            if len(parts) >= 3 and parts[:2] == ["v1", "vaults"]:
                resource["vault"] = {"id": parts[2]}
            if len(parts) >= 5:
                resource["item"] = {"id": parts[4]}
                resource["itemVersion"] = 1
            entries.append(
                {
                    "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{len(log) - n}:{method}:{path}")),
                    "timestamp": datetime.fromtimestamp(at, timezone.utc)
                    .isoformat(timespec="seconds")
                    .replace("+00:00", "Z"),
                    "action": "READ",
                    "result": "SUCCESS",
                    "actor": {
                        "id": ACTOR_ID,
                        "account": "devvault",
                        "jti": "devvault",
                        "userAgent": "",
                        "requestIp": "",
                    },
                    "resource": resource,
                }
            )
        return entries

    def metrics(self) -> str:
        """A Prometheus text exposition like Connect's ``/metrics`` (counts of requests by route)."""
        lines = ["# HELP devvault_requests_total Connect API requests answered, by route.",
                 "# TYPE devvault_requests_total counter"]  # fmt: skip
        for kind, count in sorted(self.stats()["by_kind"].items()):
            lines.append(f'devvault_requests_total{{route="{kind}"}} {count}')
        return "\n".join(lines) + "\n"

    def reset_counts(self) -> None:
        with self._log_lock:
            self.request_log.clear()
            self._request_times.clear()
            self.requests_total = self.refused = 0

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

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # type: ignore[misc]  # socket timeout: idle clients are dropped
        super().setup()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        open_routes = ("/heartbeat", "/health", "/metrics")
        authorized = path in open_routes or self._authorized()
        if not path.startswith(ADMIN_PREFIX):
            self.server.record(method, path, refused=not authorized)
        if not authorized:
            return  # 401 sent, connection closed, body never read
        if not self._read_body():
            return
        query = parse_qs(split.query, keep_blank_values=True)  # like Connect's Go server, '+' decodes to a space
        if path.startswith(ADMIN_PREFIX):
            self._admin(method, path[len(ADMIN_PREFIX) :])
            return
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
        if method != "GET":
            self._error(405, "Method not allowed: the dev vault is read-only")
            return
        if path == "/heartbeat":
            self._send(200, b".", "text/plain")
        elif path == "/health":
            self._json(200, {"name": "1Password Connect API", "version": CONNECT_VERSION, "dependencies": []})
        elif path == "/metrics":
            self._send(200, self.server.metrics().encode(), "text/plain; version=0.0.4")
        elif path == "/v1/activity":
            self._activity(query)
        else:
            self._connect_api([unquote(p) for p in path.split("/") if p], query)

    def _read_body(self) -> bool:
        """Read the declared body (so keep-alive stays in sync), refusing bad or oversized lengths."""
        raw = self.headers.get("Content-Length")
        if raw is None or raw == "":
            self.body = b""
            return True
        if not (raw.isascii() and raw.isdigit()):  # "-1", "abc", "1e3", "²": never trust it, never wait on it
            self.close_connection = True
            self._error(400, "Invalid Content-Length header")
            return False
        if int(raw) > MAX_BODY:
            self.close_connection = True
            self._error(413, f"Request body larger than {MAX_BODY} bytes")
            return False
        self.body = self.rfile.read(int(raw))
        return True

    def _connect_api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        data = self.server.data
        if parts[:2] != ["v1", "vaults"] or len(parts) > 5 or (len(parts) >= 4 and parts[3] != "items"):
            self._error(404, "Not found")
            return
        if len(parts) == 2:
            valid, wanted = self._filter(query, "vaults")
            if not valid:
                return
            vaults = data.vaults if wanted is None else [v for v in data.vaults if _matches(v, wanted)]
            self._json(200, vaults)
            return
        if not _UUID_RE.match(parts[2]):
            self._error(400, "Invalid Vault UUID")
            return
        vault = next((v for v in data.vaults if v["id"] == parts[2]), None)
        if vault is None:
            self._error(404, "vault not found")
            return
        if len(parts) == 3:
            self._json(200, vault)
            return
        items = [i for i in data.items[vault["id"]] if not i["trashed"]]
        if len(parts) == 4:
            valid, wanted = self._filter(query, "items")
            if not valid:
                return
            if wanted is not None:
                items = [i for i in items if _matches(i, wanted)]
            self._json(200, [data.summary(i) for i in items])
            return
        if not _UUID_RE.match(parts[4]):
            self._error(400, "Invalid Item UUID")
            return
        item = next((i for i in items if i["id"] == parts[4]), None)
        if item is None:
            self._error(404, "item not found")
            return
        self._json(200, item)

    def _filter(self, query: dict[str, list[str]], collection: str) -> tuple[bool, tuple[str, str] | None]:
        """(valid, (attribute, value) or None when there is no filter); an invalid one is answered 400 here."""
        if "filter" not in query:
            return True, None
        raw = query["filter"][0]
        match = _FILTER_RE.match(raw)
        if not match or match.group("attr") not in FILTERABLE[collection]:
            allowed = " or ".join(f'{a} eq "..."' for a in FILTERABLE[collection])
            self._error(400, f"Invalid filter {raw!r}: {collection} can be filtered by {allowed}")
            return False, None
        return True, (match.group("attr"), re.sub(r"\\(.)", r"\1", match.group("value")))

    def _activity(self, query: dict[str, list[str]]) -> None:
        """``GET /v1/activity``: the requests this server answered, in the APIRequest shape, newest first."""
        try:
            limit = int(query.get("limit", ["50"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            self._error(400, "limit and offset must be integers")
            return
        requests = self.server.activity()
        page = requests[offset : offset + max(0, limit)]
        headers = {"Content-Range": f"{offset}-{offset + len(page)}/{len(requests)}"}
        self._json(200, page, headers)

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
        header = self.headers.get("Authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(header, f"Bearer {self.server.token}".encode()):  # constant time
            return True
        self.close_connection = True  # its body (if any) is never read
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


def _matches(entry: dict[str, Any], wanted: tuple[str, str]) -> bool:
    attribute, value = wanted
    if attribute == "tag":
        return value in entry.get("tags", [])
    return bool(entry.get(attribute) == value)
