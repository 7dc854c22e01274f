"""A local stand-in for an image registry that serves one small image (no registry is reachable here).

It speaks the part of the OCI distribution API an engine uses to pull: ``/v2/``, manifests and blobs.
The image is busybox plus a marker file, built in memory the same
way every time, so two test processes serving the same port (``SO_REUSEPORT``) serve the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import platform
import re
import shutil
import tarfile
import threading
from dataclasses import dataclass

#: What ``cat /etc/dts-pulled`` prints in a container of the served image.
MARKER = "pulled from the test registry"
_TOOLS = ("sh", "cat", "echo", "printf", "sha256sum", "cut", "true")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class _Image:
    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> bytes:
    """An uncompressed tar of a busybox root file system with fixed owners and times."""
    busybox = shutil.which("busybox")
    assert busybox is not None, "busybox is needed to build the test image"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes | None = None, link: str | None = None, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 0
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
            elif data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            tar.addfile(info, None if data is None else io.BytesIO(data))

        for folder in ("bin", "etc", "tmp"):
            add(folder)
        with open(busybox, "rb") as binary:
            add("bin/busybox", binary.read())
        for tool in _TOOLS:
            add(f"bin/{tool}", link="busybox")
        add("etc/dts-pulled", f"{MARKER}\n".encode(), mode=0o644)
    return buffer.getvalue()


def _build_image() -> _Image:
    layer = _layer()
    compressed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(compressed),
                    "size": len(compressed)}],
    }).encode()  # fmt: skip
    return _Image(manifest, {_digest(config): config, _digest(compressed): compressed})


class ImageRegistry(http.server.ThreadingHTTPServer):
    """Serves the test image under every repository name and tag, on 127.0.0.1:``port``."""

    allow_reuse_port = True  # see FakeRegistry in test_docker_operator.py
    daemon_threads = True

    def __init__(self, port: int):
        self.image = _build_image()
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v2":
                    return self._send(200, b"{}", {"Content-Type": "application/json"})
                if re.fullmatch(r"/v2/.+/manifests/[^/]+", self.path):
                    return self._send(200, registry.image.manifest, {
                        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                        "Docker-Content-Digest": registry.image.digest,
                    })  # fmt: skip
                found = re.fullmatch(r"/v2/.+/blobs/(sha256:[0-9a-f]{64})", self.path)
                if found and found.group(1) in registry.image.blobs:
                    return self._send(200, registry.image.blobs[found.group(1)], {
                        "Content-Type": "application/octet-stream", "Docker-Content-Digest": found.group(1),
                    })  # fmt: skip
                return self._send(404, b'{"errors": [{"code": "NOT_FOUND"}]}', {"Content-Type": "application/json"})

            do_HEAD = do_GET

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
