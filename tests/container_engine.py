"""A private Docker-API engine for the container stack: Debian's Podman, its state in one folder of the caller's.

Everything lives in a folder only the caller can enter (0700, owned by them; refused otherwise), never a
fixed /tmp path: Podman's storage and run state, its settings (netavark networking, so containers find
each other by service name through aardvark-dns), the Docker API socket, and the health-check ticker.

What a Docker daemon does that Podman without systemd does not is done here, and only that:

* **Health checks.** Podman schedules them with systemd timers; without systemd nothing runs them and
  every container stays ``starting``. The ticker (``python -m tests.container_engine tick``) runs
  ``podman healthcheck run`` for each running container on that container's own ``interval`` (never
  sooner: a check that runs too often uses up a slow starter's ``retries``), and Podman applies
  ``start_period`` and ``retries`` itself.
* **The socket's group.** Podman makes the socket 0600; Docker's is 0660 with the docker group. It is
  made 0660 here with group 0, the group Airflow's containers run in (``user: 50000:0``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Container ulimits may not exceed the caller's (no CAP_SYS_RESOURCE in a sandbox); below that, open
#: files as Docker gives containers (1048576: HAProxy's maxconn 4000 needs about 8,000) and processes as
#: scripts/podman-setup does.
_NOFILE = 1048576
_NPROC = 4096
#: Networks of this engine (see containers.conf below).
SUBNET = "10.152.0.0/24"
SUBNET_POOL = "10.153.0.0/16"


def default_state_dir() -> Path:
    """``$DTS_CONTAINERS_DIR``, else ``$XDG_STATE_HOME/dts-containers`` (``~/.local/state/dts-containers``)."""
    if os.environ.get("DTS_CONTAINERS_DIR"):
        return Path(os.environ["DTS_CONTAINERS_DIR"])
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "dts-containers"


def private_dir(path: Path) -> Path:
    """Create `path` 0700 or accept it only if it is already the caller's and no one else's."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SystemExit(f"{path} is not a directory: refusing to keep the container engine there")
    if info.st_uid != os.geteuid():
        raise SystemExit(f"{path} belongs to uid {info.st_uid}, not you: refusing to keep the container engine there")
    if info.st_mode & 0o077:
        raise SystemExit(f"{path} is open to other users (mode {info.st_mode & 0o777:o}): chmod 700 it first")
    return path


@dataclass(frozen=True)
class Engine:
    """Podman's Docker API over a unix socket in `state`; images stay there between stacks."""

    state: Path

    @property
    def socket(self) -> Path:
        return self.state / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """What a `podman` or `docker-compose` command needs to use this engine (and no other)."""
        return {
            "CONTAINERS_CONF": str(self.state / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.state / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.state / "registries.conf"),
            "DOCKER_HOST": self.docker_host,
        }

    def podman(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def _write_settings(self) -> None:
        nofile = min(_NOFILE, _hard_limit("RLIMIT_NOFILE"))
        nproc = min(_NPROC, _hard_limit("RLIMIT_NPROC"))
        (self.state / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
            "[engine]\n"
            # crun fails with this sandbox's cgroup mode
            'runtime = "runc"\n'
            # no systemd: conmon's cgroup and the events log need none
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            # its own run-time folder too (the default /run/libpod is every engine's on this host)
            f'tmp_dir = "{self.state / "tmp"}"\n\n'
            "[network]\n"
            'network_backend = "netavark"\n'
            # Subnets of their own: the default 10.88.0.0/16 and pools from 10.89.0.0 may already be
            # routed to another engine's bridge on this host (scripts/podman-setup's, for one), and a
            # second bridge on the same subnet silently blackholes every connection out.
            f'default_subnet = "{SUBNET}"\n'
            f'default_subnet_pools = [{{base = "{SUBNET_POOL}", size = 24}}]\n'
            f'network_config_dir = "{self.state / "networks"}"\n'
        )
        (self.state / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.state / "storage"}"\nrunroot = "{self.state / "run"}"\n'
        )
        # No registry is reachable: short names resolve only to images already here (the stand-ins).
        (self.state / "registries.conf").write_text(
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n'
        )

    def running(self) -> bool:
        return _ping(self.socket)

    def start(self) -> None:
        """Start the API service (idempotent); it runs in its own session until `stop`."""
        private_dir(self.state)
        self._write_settings()
        if self.running():
            return
        self.socket.unlink(missing_ok=True)
        log = (self.state / "service.log").open("ab")
        # Its own session (a Ctrl-C in the caller's terminal must not stop it) and / as working
        # directory (conmon fails containers once the directory it started in is gone).
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.docker_host],
            env={**os.environ, **self.env},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        (self.state / "service.pid").write_text(str(service.pid))
        deadline = time.monotonic() + 30
        while not self.running():
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Podman's API service did not start; its log: {self.state / 'service.log'}")
            time.sleep(0.1)
        # Docker's socket is group-readable by its group; tasks run in group 0 (user 50000:0).
        os.chmod(self.socket, 0o660)

    def start_ticker(self) -> None:
        """Start the health-check ticker (idempotent)."""
        if _alive(self.state / "ticker.pid"):
            return
        log = (self.state / "ticker.log").open("ab")
        ticker = subprocess.Popen(
            [sys.executable, "-m", "tests.container_engine", "tick", "--state", str(self.state)],
            cwd=Path(__file__).parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        (self.state / "ticker.pid").write_text(str(ticker.pid))

    def stop(self) -> None:
        """End the ticker and the API service this folder started (by their recorded pids)."""
        for name in ("ticker.pid", "service.pid"):
            _end(self.state / name)
        self.socket.unlink(missing_ok=True)


def _hard_limit(name: str) -> int:
    import resource

    hard = resource.getrlimit(getattr(resource, name))[1]
    return _NOFILE if hard == resource.RLIM_INFINITY else int(hard)


def _ping(socket_path: Path) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(socket_path))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return s.recv(64).split(b"\r\n")[0].endswith(b" 200 OK")
    return False


def _alive(pid_file: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), 0)
        return True
    return False


def _end(pid_file: Path) -> None:
    """SIGTERM the process group recorded in `pid_file`, then SIGKILL it if it outlives 10 s."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):  # our own child: reap it, or it lingers a zombie
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            os.kill(pid, 0)
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _duration(value: object, default: float) -> float:
    """Podman reports health-check durations in nanoseconds (0 = unset)."""
    return float(value) / 1e9 if isinstance(value, int | float) and value > 0 else default


@dataclass
class _Check:
    interval: float
    timeout: float
    due: float


def _check_of(engine: Engine, cid: str, now: float) -> _Check | None:
    inspected = engine.podman("inspect", "--format", "json", cid, check=False, timeout=60)
    with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
        health = json.loads(inspected.stdout)[0]["Config"].get("Healthcheck") or {}
        if health.get("Test") and health["Test"][0] != "NONE":
            interval = _duration(health.get("Interval"), 30)
            return _Check(interval, _duration(health.get("Timeout"), 30), now + interval)
    return None


def tick(engine: Engine) -> None:
    """Run each running container's health check on its own interval, forever (until SIGTERM)."""
    checks: dict[str, _Check | None] = {}
    while True:
        listed = engine.podman("ps", "--format", "json", check=False, timeout=60)
        ids = {c["Id"] for c in json.loads(listed.stdout or "[]")} if listed.returncode == 0 else set()
        for gone in checks.keys() - ids:  # removed, or restarted under a new id
            del checks[gone]
        now = time.monotonic()
        for cid in ids:
            if cid not in checks:
                checks[cid] = _check_of(engine, cid, now)
            check = checks[cid]
            if check is not None and check.due <= now:
                engine.podman("healthcheck", "run", cid, check=False, timeout=check.timeout + 30)
                check.due = time.monotonic() + check.interval
        time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.container_engine")
    parser.add_argument("command", choices=["start", "stop", "tick"])
    parser.add_argument("--state", type=Path, default=default_state_dir())
    args = parser.parse_args(argv)
    engine = Engine(args.state)
    if args.command == "start":
        engine.start()
        engine.start_ticker()
        print(engine.docker_host)
    elif args.command == "stop":
        engine.stop()
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        tick(engine)


if __name__ == "__main__":
    main()
