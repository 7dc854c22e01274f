"""The local dev stack behind ``scripts/dev``: Airflow's components, the dev vault and a Docker-API engine.

``scripts/dev`` installs what is needed, then runs this with the venv's Python:

* ``up`` (default): check the ports, start (or reuse) a Docker-API engine, the dev vault, then the
  API server, scheduler, DAG processor and triggerer (LocalExecutor, SQLite in ``.dev/airflow``),
  and print the login. Everything listens on 127.0.0.1 only. Every line the components print
  passes through a filter that replaces the dev vault's values with ``***`` (LocalExecutor copies
  task output to the console unmasked). Ctrl-C stops it all.
* ``shell [COMMAND ...]``: one command with the running stack's environment and its output filtered
  like the console, e.g. ``scripts/dev shell airflow dags test example_onepassword_hook``; without a
  command, an interactive shell with that environment (unfiltered).
* ``env``: the same environment as ``export`` lines, for ``eval "$(scripts/dev env)"``.
* ``ports``: only the port check (``scripts/dev`` runs it before installing anything).

It runs the components itself instead of ``airflow standalone`` so that it can bind the API server to
loopback, leave out the task-log servers (with LocalExecutor the API server reads task logs from disk;
the servers would listen on every interface) and filter the console. Only the standard library is
imported at module level: ``ports`` runs with the system Python, before the venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
DEV_DIR = Path(os.environ.get("DTS_DEV_DIR", REPO / ".dev"))
STACK_ENV = DEV_DIR / "stack.env.json"  # what `up` runs with, for `shell` and `env`
DEFAULT_ENGINE = "unix:///tmp/dts-podman/podman.sock"  # where scripts/podman-setup serves; the example's default
COMPONENTS = {  # name -> airflow subcommand; log servers left out (see the module docstring)
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
#: A dependency of Airflow (svcs) imports starlette's test client, which warns once per process
#: about httpx; nothing in Airflow uses that client. Only this message is silenced.
QUIET_WARNINGS = "ignore:Using `httpx` with `starlette.testclient` is deprecated"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def port_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"scripts/dev: {name}={raw!r} is not a port number (1-65535)")
    return int(raw)


def ports() -> dict[str, int]:
    return {"AIRFLOW_PORT": port_setting("AIRFLOW_PORT", 8080), "DEVVAULT_PORT": port_setting("DEVVAULT_PORT", 8089)}


def check_ports(wanted: dict[str, int]) -> None:
    """Exit with one line per port that something else already holds, before anything starts."""
    busy = []
    for name, port in wanted.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append((name, port))
    if len(set(wanted.values())) < len(wanted):
        sys.exit(f"scripts/dev: {' and '.join(wanted)} must differ (both are {next(iter(wanted.values()))})")
    for name, port in busy:
        print(
            f"scripts/dev: port {port} ({name}) is already in use: stop what listens there, or choose another "
            f"port, e.g. {name}={port + 10} scripts/dev",
            file=sys.stderr,
        )
    if busy:
        sys.exit(1)


def stack_environment(airflow_port: int, vault_port: int, docker_host: str | None) -> dict[str, str]:
    """The settings every component (and a second shell) runs with; nothing here is a vault value."""
    token = os.environ.get("DEVVAULT_TOKEN", "dev-token-not-secret")
    vault_url = f"http://127.0.0.1:{vault_port}"
    env = {
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(DEV_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # The UI, the REST API and the execution API tasks report to: one port, chosen once, loopback only.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{airflow_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{airflow_port}/execution/",
        # The secrets backend for every process, the XCom guard, and the hook's default connection.
        "AIRFLOW__SECRETS__BACKEND": "airflow_dts_provider.secrets.onepassword.OnePasswordBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connect_host": vault_url, "vault": "DTS Dev"}),
        "AIRFLOW__CORE__XCOM_BACKEND": "airflow_dts_provider.xcom.backend.SecretMaskingXComBackend",
        "AIRFLOW__LOGGING__SECRET_MASK_ADAPTER": "airflow_dts_provider.secrets.masking.encoded_forms",
        "OP_CONNECT_TOKEN": token,
        "AIRFLOW_CONN_ONEPASSWORD_DEFAULT": json.dumps(
            {"conn_type": "onepassword", "host": vault_url, "password": token, "extra": {"vault": "DTS Dev"}}
        ),
        "DEVVAULT_TOKEN": token,
        "PYTHONWARNINGS": QUIET_WARNINGS,
    }
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


# -- the Docker-API engine -------------------------------------------------------------------------


def engine_answers(url: str) -> bool:
    """True when a Docker API answers ``/_ping`` at ``url`` (unix:// or tcp://)."""
    try:
        if url.startswith("unix://"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(url.removeprefix("unix://"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).split(b" ")[1:2] == [b"200"]
        return answers(url.replace("tcp://", "http://", 1).rstrip("/") + "/_ping")
    except (OSError, IndexError, ValueError):
        return False


def docker_engine() -> str | None:
    """Reuse DOCKER_HOST or a running Podman service, else start one; one line says where (or why not)."""
    chosen = os.environ.get("DOCKER_HOST")
    if chosen:
        if engine_answers(chosen):
            say(f"Docker-API engine for example_secret_docker: {chosen} (from DOCKER_HOST)")
        else:
            say(f"DOCKER_HOST={chosen} does not answer: example_secret_docker fails until an engine runs there")
        return chosen
    if engine_answers(DEFAULT_ENGINE):
        say(f"Docker-API engine for example_secret_docker: {DEFAULT_ENGINE} (Podman, already running)")
        return DEFAULT_ENGINE
    setup = subprocess.run([str(REPO / "scripts" / "podman-setup")], capture_output=True, text=True, check=False)
    url = setup.stdout.strip().splitlines()[-1] if setup.returncode == 0 and setup.stdout.strip() else ""
    if url and engine_answers(url):
        say(f"Docker-API engine for example_secret_docker: {url} (Podman, started by scripts/podman-setup)")
        return url
    reason = (setup.stderr.strip().splitlines() or ["no output"])[-1]
    say(
        f"no Docker-API engine: scripts/podman-setup failed ({reason}); every other example works, "
        "example_secret_docker fails until one runs (run scripts/podman-setup, or set DOCKER_HOST)"
    )
    return None


# -- the console filter ----------------------------------------------------------------------------


def console_filter() -> Callable[[str], str]:
    """Hide from a text every value the dev vault serves (and its token) with ``***``.

    The same rule as Airflow's log masking (each value and each of its lines, 5+ characters, longest
    first), so Airflow's own words stay intact; MENU fields hold a choice (a database type), not data.
    """
    from airflow_dts_provider._onepassword.masking import scrub_parts, scrub_text
    from airflow_dts_provider.devvault.store import VaultData

    path = os.environ.get("DEVVAULT_FILE") or REPO / "airflow_dts_provider" / "devvault" / "sample_vault.yaml"
    data = VaultData.load(path)
    values = [os.environ.get("DEVVAULT_TOKEN", "dev-token-not-secret")]
    for items in data.items.values():
        for item in items:
            values += [f["value"] for f in item["fields"] if f["value"] and f["type"] != "MENU"]
    parts = scrub_parts(values)
    return lambda text: scrub_text(text, parts)


class Component:
    """One Airflow process whose output is filtered and prefixed with its name, as standalone does."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], hide: Callable[[str], str], lock: threading.Lock
    ):
        self.name = name
        self.process = subprocess.Popen(
            ["airflow", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: stopping it stops the processes it forked
        )
        self.reader = threading.Thread(target=self._relay, args=(self.process.stdout, hide, lock), daemon=True)
        self.reader.start()

    def _relay(self, stream: IO[str] | None, hide: Callable[[str], str], lock: threading.Lock) -> None:
        assert stream is not None
        for line in stream:
            with lock:
                print(f"{self.name:13} | {hide(line.rstrip())}", flush=True)


def wait_until(check: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def answers(url: str) -> bool:
    """True when ``url`` (http:// only) answers 200 within 3 s."""
    if not url.startswith("http://"):
        return False
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (http:// checked above)
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def stopped_on_exit(processes: list[subprocess.Popen[Any]]) -> Iterator[None]:
    """Stop every process group however we leave (Ctrl-C, SIGTERM, a crash): SIGTERM, SIGKILL after 30 s.

    Each component runs in its own process group, so what it forked (the scheduler's LocalExecutor
    workers) goes with it; Ctrl-C in the terminal reaches this process only, which stops the rest.
    """

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    except KeyboardInterrupt:
        say("stopping the dev stack")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in processes:  # whatever is left in a group, the group leader included
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def up() -> int:
    chosen = ports()
    check_ports(chosen)
    DEV_DIR.mkdir(parents=True, exist_ok=True)
    docker_host = docker_engine()
    settings = stack_environment(chosen["AIRFLOW_PORT"], chosen["DEVVAULT_PORT"], docker_host)
    STACK_ENV.write_text(json.dumps(settings))
    env = {**os.environ, **settings}
    hide = console_filter()
    lock = threading.Lock()
    processes: list[subprocess.Popen[Any]] = []
    with stopped_on_exit(processes):
        vault_url = f"http://127.0.0.1:{chosen['DEVVAULT_PORT']}"
        vault_log = DEV_DIR / "devvault.log"
        vault_args = ["--port", str(chosen["DEVVAULT_PORT"])]
        if os.environ.get("DEVVAULT_FILE"):
            vault_args += ["--file", os.environ["DEVVAULT_FILE"]]
        with vault_log.open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow_dts_provider.devvault", *vault_args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        if not wait_until(lambda: answers(f"{vault_url}/heartbeat"), 30):
            say(f"the dev vault did not start; its log: {vault_log}")
            return 1
        say(f"dev vault (1Password Connect stand-in) on {vault_url}, log: {vault_log}")
        migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False)
        if migrate.returncode != 0:
            print(hide(migrate.stdout + migrate.stderr), file=sys.stderr)
            say("airflow db migrate failed (output above)")
            return 1
        say(f"metadata database ready (SQLite, {DEV_DIR / 'airflow' / 'airflow.db'})")
        components = [Component(name, args, env, hide, lock) for name, args in COMPONENTS.items()]
        processes += [c.process for c in components]
        url = f"http://localhost:{chosen['AIRFLOW_PORT']}"
        passwords = DEV_DIR / "airflow" / "simple_auth_manager_passwords.json.generated"
        ready = wait_until(lambda: passwords.is_file() and answers(f"{url}/api/v2/monitor/health"), 300, 1)
        with lock:
            if ready:
                password = json.loads(passwords.read_text())["admin"]
                say(f"Airflow UI: {url}   login: admin / {password}   (Ctrl-C stops everything)")
                say("another shell with this environment: scripts/dev shell")
        return supervise(components)


def supervise(components: list[Component]) -> int:
    """Run until Ctrl-C/SIGTERM (0), or until a component exits on its own (1, naming it)."""
    while True:
        for component in components:
            code = component.process.poll()
            if code is not None:
                component.reader.join(5)
                say(f"{component.name} exited with {code}; stopping the dev stack (its output is above)")
                return 1
        time.sleep(0.5)


def saved_environment() -> dict[str, str]:
    """The running stack's environment, or (with a note) the one `up` would use now."""
    if STACK_ENV.is_file():
        env: dict[str, str] = json.loads(STACK_ENV.read_text())
        return env
    chosen = ports()
    print("scripts/dev: the dev stack has not run here yet; start it with scripts/dev", file=sys.stderr)
    return stack_environment(chosen["AIRFLOW_PORT"], chosen["DEVVAULT_PORT"], os.environ.get("DOCKER_HOST"))


def export_lines(env: dict[str, str]) -> Iterable[str]:
    return (f"export {name}={shlex.quote(value)}" for name, value in env.items())


def shell(command: list[str]) -> int:
    """One command with its output filtered like the stack's console, or an interactive shell."""
    env = {**os.environ, **saved_environment()}
    if not command:
        print(
            "scripts/dev: a shell with the dev stack's environment (`exit` to leave). What you run here prints "
            "unfiltered: `airflow dags test` shows task output as the task wrote it; run it as "
            "`scripts/dev shell airflow dags test DAG_ID` to keep the dev vault's values off the screen.",
            file=sys.stderr,
        )
        shell_path = os.environ.get("SHELL") or "/bin/bash"
        os.execvpe(shell_path, [shell_path], env)  # noqa: S606 (an interactive shell is the point)
    hide = console_filter()
    try:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except FileNotFoundError:
        print(f"scripts/dev: {command[0]}: command not found", file=sys.stderr)
        return 127
    assert process.stdout is not None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command; keep relaying until it ends
    for line in process.stdout:
        print(hide(line.rstrip("\n")), flush=True)
    return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="up", choices=["up", "shell", "env", "ports"])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="for shell: a command to run instead")
    args = parser.parse_args(argv)
    if args.action == "ports":
        check_ports(ports())
        return 0
    if args.action == "env":
        print("\n".join(export_lines(saved_environment())))
        return 0
    if args.action == "shell":
        return shell(args.command)
    return up()


if __name__ == "__main__":
    sys.exit(main())
