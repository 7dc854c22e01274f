"""A local stand-in for Slack (the real one is on the internet, unreachable here): records what the
providers-slack hooks send over HTTP and answers like Slack does, including its failure modes."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class SlackStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages: list[dict[str, Any]] = []
        self.archive: list[dict[str, Any]] = []  # every message of the session; reset() keeps it
        self.plan: list[tuple[str, Any]] = []  # consumed one per request: ("error", "invalid_auth"), ("status", 500),
        # ("rate_limit", seconds), ("slow", seconds)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow answer (what the timeout tests do) is expected: no traceback."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.plan.clear()

    def next_fault(self) -> tuple[str, Any] | None:
        with self.lock:
            return self.plan.pop(0) if self.plan else None


class _Handler(BaseHTTPRequestHandler):
    server: SlackStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "json" in self.headers.get("Content-Type", ""):
            body = json.loads(raw or b"{}")
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        fault = self.server.next_fault()
        record = {
            "path": self.path, "auth": self.headers.get("Authorization"), "body": body, "fault": fault,
            "at": time.monotonic(),
        }  # fmt: skip
        with self.server.lock:  # recorded on arrival: a slow answer must not land in the next test's list
            self.server.messages.append(record)
            self.server.archive.append(record)
        if fault and fault[0] == "slow":
            time.sleep(fault[1])
        webhook = self.path.startswith("/webhook/")
        if fault and fault[0] == "status":
            self._reply(fault[1], b"server error", "text/plain")
        elif fault and fault[0] == "rate_limit":
            payload = b"rate_limited" if webhook else json.dumps({"ok": False, "error": "ratelimited"}).encode()
            self._reply(
                429, payload, "application/json", {"Retry-After": str(fault[1])} if fault[1] is not None else {}
            )
        elif fault and fault[0] == "error":
            if webhook:
                self._reply(404, fault[1].encode(), "text/plain")
            else:
                self._reply(200, json.dumps({"ok": False, "error": fault[1]}).encode(), "application/json")
        elif webhook:
            self._reply(200, b"ok", "text/plain")
        else:
            answer = {"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}"}
            self._reply(200, json.dumps(answer).encode(), "application/json")

    def _reply(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)
