"""``scripts/dev`` from a fresh clone, as a newcomer runs it (and as CI can).

The repository's files are copied as a clone would have them (no ``.venv``, no ``.dev``), then
``scripts/dev`` installs, creates its own venv and starts on ports that are not the defaults. Every
example DAG is triggered through the REST API and must succeed; the console must hold none of the
dev vault's values; only loopback addresses listen; a second shell reaches the stack; a port in use
is one line; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import REPO, free_port, require, require_binary

#: Installs a venv and runs Airflow: not part of scripts/test --quick.
pytestmark = pytest.mark.slow

EXAMPLES = {"example_onepassword_hook", "example_secret_docker", "example_secrets_backend", "example_slack_alerts"}
SAMPLE_VAULT = REPO / "airflow_dts_provider" / "devvault" / "sample_vault.yaml"
UI_LINE = re.compile(r"==> Airflow UI: (http://localhost:(\d+))\s+login: admin / (\S+)")


def vault_values() -> set[str]:
    """Every value the sample vault serves that a masker could hide (5+ characters; MENU fields are choices)."""
    values = set()
    for vault in yaml.safe_load(SAMPLE_VAULT.read_text())["vaults"]:
        for item in vault["items"]:
            for field in item.get("fields", []):
                value = str(field.get("value", ""))
                if len(value) >= 5 and field.get("type") != "MENU":
                    values.add(value)
    return values


@dataclass
class DevStack:
    clone: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    console: Path
    url: str
    token: str

    def text(self) -> str:
        return self.console.read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a clone of this checkout holds: tracked and new (not ignored) files, as they are now."""
    require_binary("git")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    require(listed.returncode == 0, "not a git checkout")
    clone = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is still listed
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def newcomer_env(**settings: str) -> dict[str, str]:
    """A login shell's environment: none of this test run's Airflow settings, venv or engine."""
    skipped = ("AIRFLOW", "_AIRFLOW", "OP_", "DEVVAULT", "DOCKER_", "DTS_", "VIRTUAL_ENV", "PYTHON")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    return {**env, **settings}


@pytest.fixture(scope="module")
def dev_stack(fresh_clone: Path) -> Iterator[DevStack]:
    env = newcomer_env(AIRFLOW_PORT=str(free_port()), DEVVAULT_PORT=str(free_port()))
    console = fresh_clone / "console.log"
    with console.open("wb") as out:
        proc = subprocess.Popen(
            ["scripts/dev"], cwd=fresh_clone, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    started = time.monotonic()
    try:
        while not (match := UI_LINE.search(console.read_text(errors="replace"))):
            assert proc.poll() is None, f"scripts/dev exited {proc.returncode}:\n{console.read_text()[-4000:]}"
            assert time.monotonic() - started < 600, f"no login line after 600 s:\n{console.read_text()[-4000:]}"
            time.sleep(2)
        print(f"scripts/dev from a fresh clone: login line after {time.monotonic() - started:.0f} s")
        url, port, password = match[1], match[2], match[3]
        assert port == env["AIRFLOW_PORT"]
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        assert token.status_code == 201, token.text
        yield DevStack(fresh_clone, env, proc, console, url, token.json()["access_token"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError("scripts/dev did not stop within 90 s of Ctrl-C") from None
        assert proc.returncode == 0, console.read_text()[-3000:]
        assert "==> stopping the dev stack" in console.read_text()
        # nothing it started is left behind (the scheduler's LocalExecutor workers once were)
        assert left_in(fresh_clone) == []


def left_in(folder: Path) -> list[str]:
    """Processes still running from `folder` (their working directory is in it)."""
    left = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        cwd = process.info["cwd"] or ""
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            left.append(" ".join(process.info["cmdline"] or []))
    return left


def test_every_example_succeeds_and_the_console_shows_no_vault_value(dev_stack: DevStack) -> None:
    deadline = time.monotonic() + 120
    while {d["dag_id"] for d in dev_stack.api("GET", "/api/v2/dags").json()["dags"]} < EXAMPLES:
        assert time.monotonic() < deadline, "the DAG processor did not load every example"
        time.sleep(2)
    runs = {}
    for dag_id in sorted(EXAMPLES):  # as a person does in the UI: unpause, trigger
        assert dev_stack.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        triggered = dev_stack.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert triggered.status_code == 200, triggered.text
        runs[dag_id] = triggered.json()["dag_run_id"]
    deadline = time.monotonic() + 300
    while True:
        states = {d: dev_stack.api("GET", f"/api/v2/dags/{d}/dagRuns/{r}").json()["state"] for d, r in runs.items()}
        if all(state in ("success", "failed") for state in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert states == dict.fromkeys(EXAMPLES, "success"), dev_stack.text()[-6000:]

    # task logs still reach the UI with no log server running (LocalExecutor: the API server reads the files)
    run = runs["example_onepassword_hook"]
    tasks = dev_stack.api("GET", f"/api/v2/dags/example_onepassword_hook/dagRuns/{run}/taskInstances").json()
    task_id = tasks["task_instances"][0]["task_id"]
    log = dev_stack.api("GET", f"/api/v2/dags/example_onepassword_hook/dagRuns/{run}/taskInstances/{task_id}/logs/1")
    assert log.status_code == 200 and "fetched Socrata Open Data/password: ***" in log.text

    console = dev_stack.text()
    # the task output did reach the console (LocalExecutor copies it), filtered
    assert "fetched Socrata Open Data/password: ***" in console
    assert "publishing with app *** (values are masked: ***)" in console
    leaked = sorted(value for value in vault_values() if value in console)
    assert leaked == [], f"dev vault values on the console: {leaked}"
    # ... and the rest of Airflow's output is intact, without the noise a newcomer reads as trouble
    assert "Uvicorn running on http://127.0.0.1:" in console and "Starting the scheduler" in console
    for noise in ("starlette.testclient", "looks like production", "ASGI app factory detected", "Traceback"):
        assert noise not in console, noise
    assert re.search(r"==> Docker-API engine for example_secret_docker: unix://\S+", console)


def test_only_loopback_listens(dev_stack: DevStack) -> None:
    processes = [psutil.Process(dev_stack.proc.pid), *psutil.Process(dev_stack.proc.pid).children(recursive=True)]
    listening = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:  # a short-lived child (a parse, a health check) ended: it listens on nothing
            continue
        listening |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    ports = {int(dev_stack.env["AIRFLOW_PORT"]), int(dev_stack.env["DEVVAULT_PORT"])}
    assert {port for _, port in listening} == ports, listening  # no log servers (8793/8794)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening


def test_a_second_shell_reaches_the_stack(dev_stack: DevStack) -> None:
    exported = subprocess.run(
        ["scripts/dev", "env"], cwd=dev_stack.clone, env=newcomer_env(), capture_output=True, text=True, timeout=60
    )
    assert exported.returncode == 0, exported.stderr
    assert f"export AIRFLOW__API__PORT={dev_stack.env['AIRFLOW_PORT']}" in exported.stdout
    assert "export DOCKER_HOST=unix://" in exported.stdout
    # the example's docstring: `airflow dags test example_onepassword_hook`, from another terminal. The DAG
    # is paused first, as new DAGs are: the scheduler would otherwise run the test run's tasks as well.
    dag = "example_onepassword_hook"
    assert dev_stack.api("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": True}).status_code == 200
    tested = subprocess.run(
        ["scripts/dev", "shell", "airflow", "dags", "test", dag],
        cwd=dev_stack.clone, env=newcomer_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr[-3000:]
    assert re.search(r"DagRun Finished: dag_id=example_onepassword_hook, .*state=success", tested.stdout)
    # the task prints a value: `airflow dags test` shows task output unmasked; the shell command filters it
    assert "fetched Socrata Open Data/password: ***" in tested.stdout
    assert sorted(value for value in vault_values() if value in tested.stdout + tested.stderr) == []


def test_a_port_in_use_is_one_line_before_anything_starts(dev_stack: DevStack) -> None:
    started = time.monotonic()
    second = subprocess.run(
        ["scripts/dev"],
        cwd=dev_stack.clone,
        env=newcomer_env(AIRFLOW_PORT=dev_stack.env["AIRFLOW_PORT"], DEVVAULT_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert second.stdout == ""
    port = dev_stack.env["AIRFLOW_PORT"]
    assert second.stderr.splitlines() == [
        f"scripts/dev: port {port} (AIRFLOW_PORT) is already in use: stop what listens there, or choose another "
        f"port, e.g. AIRFLOW_PORT={int(port) + 10} scripts/dev"
    ]
    assert time.monotonic() - started < 10
    assert dev_stack.proc.poll() is None, "the running stack is untouched"
    assert dev_stack.api("GET", "/api/v2/monitor/health").status_code == 200
