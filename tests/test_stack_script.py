"""``scripts/stack up|status|down``: the compose stack as local processes, for a person, always torn down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import REPO, require_binary

#: Starts the whole stack: not part of scripts/test --quick.
pytestmark = pytest.mark.slow


def stack(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scripts/stack", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    for binary in ("haproxy", "redis-server", "podman"):
        require_binary(binary)
    assert stack("status").stdout.strip() == "scripts/stack: not running"
    console = tmp_path / "console.log"
    with console.open("w") as out:
        up = subprocess.Popen(["scripts/stack", "up"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while not (match := re.search(r"Airflow UI \(HAProxy\): (\S+)\s+login: (\S+) / (\S+)", console.read_text())):
            assert up.poll() is None, console.read_text()[-3000:]
            assert time.monotonic() - started < 400, console.read_text()[-3000:]
            time.sleep(1)
        ui, user, password = match[1], match[2], match[3]
        assert httpx.post(f"{ui}/auth/token", json={"username": user, "password": password}).status_code in (200, 201)
        status = stack("status")
        assert status.returncode == 0, status.stdout
        assert len(re.findall(r"\bup\b", status.stdout)) == 3, status.stdout
        second = stack("up")  # refused, and the first one is left alone
        assert second.returncode == 1 and "already running" in second.stderr
        processes = psutil.Process(up.pid).children(recursive=True)
        assert len(processes) >= 8  # vault, redis, API server, scheduler, DAG processor, worker, Flower, HAProxy
        print(f"scripts/stack up: ready in {time.monotonic() - started:.0f} s")
        stopping = time.monotonic()
        down = stack("down")
        assert down.returncode == 0 and "down" in down.stdout
        assert up.wait(60) == 0
        print(f"scripts/stack down: everything stopped in {time.monotonic() - stopping:.0f} s")
        _, alive = psutil.wait_procs(processes, timeout=30)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{ui}/api/v2/monitor/health", timeout=5)
        assert stack("status").returncode == 1
        assert "tearing down" in console.read_text()
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGTERM)
            up.wait(120)
