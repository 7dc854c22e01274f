"""Shared fixtures: a real dev vault (Connect API over HTTP) and clients pointed at it."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import psycopg2
import pytest

from airflow_dts_provider._onepassword import ConnectSettings, OnePasswordClient
from airflow_dts_provider.devvault import DevVaultServer, VaultData
from tests.container_engine import Engine, default_state_dir
from tests.slack_standin import SlackStandIn

TESTS = Path(__file__).parent
REPO = TESTS.parent
VAULT_FILE = TESTS / "data" / "test_vault.yaml"
TOKEN = "test-token-0d1b2c"
CANARY = "CANARY-7f3a9c1e-do-not-leak"
#: tests/data/test_vault.yaml's airflow/connections/encoded_canary: its password and an extra.
ENCODED_CANARY = "p@ss/w0rd+S\u00e9cret=1 x'\"<&>\\\t-ENC-CANARY-3e8a"
ENCODED_EXTRA_CANARY = "extra&value<ENC-EXTRA-CANARY-5f0b>"
#: Every canary value in the test vault that must never show anywhere.
CANARIES = (
    CANARY,
    "MULTI-CANARY-LINE-ONE-5c7e",
    "MULTI-CANARY-LINE-TWO-8d0a",
    "EXTRA-JSON-CANARY-4b1d-do-not-leak",
    "EXTRA-SECTION-CANARY-9e2f-do-not-leak",
    ENCODED_CANARY,
    ENCODED_EXTRA_CANARY,
)


def canary_forms(value: str) -> dict[str, str]:
    """A canary as written out on its own (searched for by the sweeps), independently of the product's list."""
    forms = {
        "": value,
        " percent-encoded": quote(value, safe=""),
        " percent-encoded, + for space": quote_plus(value),
        " JSON-escaped": json.dumps(value)[1:-1],
        " JSON-escaped, not ASCII": json.dumps(value, ensure_ascii=False)[1:-1],
        " SQL-quoted (a DB dump)": value.replace("'", "''"),
    }
    return {name: form for name, form in forms.items() if name == "" or form != value}


def canaries_in(text: str) -> list[str]:
    """Each canary found in ``text``, in any of its forms, named with the form."""
    return [f"{canary!r}{name}" for canary in CANARIES for name, form in canary_forms(canary).items() if form in text]


DOCKER_URL = "unix:///tmp/dts-podman/podman.sock"
#: The Fernet key published in docker/.env.example (and the team's old README); fine on a laptop only.
EXAMPLE_FERNET_KEY = "PTkIRwL-c46jgnaohlkkXfVikC-roKa95ipXfqST7JM="
#: A valid key that is not the example one, for the deployment tests.
TEST_FERNET_KEY = "x8jrBRsdZ0h2N9qXzyQXN2zCwdlxS_QFkpn7U2a1uXM="
#: CI sets this so that a test needing a missing tool fails instead of skipping.
REQUIRE_ALL = os.environ.get("DTS_REQUIRE_ALL_TESTS") == "1"


#: Fixtures that start Airflow, a database or a server stack: tests using them are marked ``slow``
#: (``scripts/test --quick`` leaves them out; CI runs everything). The Podman engine (``docker_url``) is
#: not among them: it starts in seconds and a container run costs about one, so SecretDockerOperator's
#: ``execute`` against it is part of the quick tests and of the mutation run.
SLOW_FIXTURES = frozenset({"airflow_stack", "postgres", "cli_env", "container_engine"})


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark slow tests as they are collected (before ``-m`` selects)."""
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``runs_last`` go to the end, whatever order the rest runs in."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


def logged_messages(printed: str) -> list[str]:
    """The messages this package's classes logged through the task SDK's ``self.log`` (printed to stdout), whole.

    Lines of other loggers (providers' hooks, Airflow) are left out.
    """
    pattern = r"^\S+ \[\w+\s*\] (.*?)\s*\[[\w.]*airflow_dts_provider\.[\w.]*\]"
    return re.findall(pattern, printed, re.MULTILINE)


def require(condition: bool, reason: str) -> None:
    """Skip locally when a dependency is missing; fail in CI, where everything must run."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required test dependency missing: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


SAMPLE_VAULT_FILE = REPO / "airflow_dts_provider" / "devvault" / "sample_vault.yaml"


@pytest.fixture
def clean_masker() -> Iterator[Callable[[str], str]]:
    """Both of Airflow's secret maskers emptied for the test and restored after it.

    The maskers are process-wide: without this, a masking test passes on patterns an earlier test
    registered even when the code under test registers nothing. Yields a function applying the task
    SDK masker to a text (what task logs get).
    """
    from airflow._shared.secrets_masker import _secrets_masker as core_masker
    from airflow.sdk._shared.secrets_masker import _secrets_masker as sdk_masker
    from airflow.sdk._shared.secrets_masker import redact

    maskers = [sdk_masker(), core_masker()]
    saved = [(m.patterns.copy(), m.replacer) for m in maskers]
    for masker in maskers:
        masker.reset_masker()
    try:
        yield lambda text: str(redact(text))
    finally:
        for masker, (patterns, replacer) in zip(maskers, saved, strict=True):
            masker.patterns, masker.replacer = patterns, replacer


@pytest.fixture(scope="session")
def docker_url() -> str:
    """The local Podman engine serving the Docker API (scripts/podman-setup makes it, idempotently)."""
    require_binary("podman")
    require_binary("busybox")
    result = subprocess.run([str(REPO / "scripts" / "podman-setup")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == DOCKER_URL
    return DOCKER_URL


@pytest.fixture(scope="session")
def container_engine() -> Iterator[Engine]:
    """The caller's private Podman engine (started here if it is not running, and then stopped here)."""
    for tool in ("podman", "runc", "mmdebstrap", "busybox"):
        require_binary(tool)
    require(Path("/usr/lib/podman/aardvark-dns").exists(), "aardvark-dns is not installed")
    engine = Engine(default_state_dir())
    started = not engine.running()
    engine.start()
    engine.start_ticker()
    yield engine
    if started:
        engine.stop()


@pytest.fixture(scope="session")
def vault_data() -> VaultData:
    """The test vaults plus the bundled sample vault ('DTS Dev') the example DAGs use."""
    data = VaultData.load(VAULT_FILE)
    sample = VaultData.load(SAMPLE_VAULT_FILE)
    return VaultData(data.vaults + sample.vaults, {**data.items, **sample.items})


@pytest.fixture(scope="session")
def devvault_server(vault_data: VaultData) -> Iterator[DevVaultServer]:
    server = DevVaultServer(vault_data, token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def devvault(devvault_server: DevVaultServer) -> Iterator[DevVaultServer]:
    """The dev vault with request counts and faults reset before and after the test."""
    devvault_server.reset()
    yield devvault_server
    devvault_server.reset()


@pytest.fixture
def make_client(devvault: DevVaultServer) -> Iterator[Callable[..., OnePasswordClient]]:
    """Fresh (unshared) clients with test-sized timeouts; each test starts with a cold cache."""
    made: list[OnePasswordClient] = []

    def factory(**overrides: Any) -> OnePasswordClient:
        values: dict[str, Any] = {
            "host": devvault.url,
            "token": TOKEN,
            "vault": "Team Vault",
            "timeout": 2.0,
            "max_retries": 2,
            "backoff": 0.01,
            "max_backoff": 0.5,
        }
        values.update(overrides)
        client = OnePasswordClient(ConnectSettings(**values))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def vault_id(data: VaultData, name: str) -> str:
    return next(v["id"] for v in data.vaults if v["name"] == name)


def item_ids(data: VaultData, vault: str, title: str) -> list[str]:
    return [i["id"] for i in data.items[vault_id(data, vault)] if i["title"] == title]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool],
    timeout: float = 15,
    what: str = "condition",
    alive: Callable[[], object] | None = None,
    interval: float = 0.2,
) -> None:
    """Poll `condition` until it holds; `alive` may raise early (e.g. when a process it needs exited)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`, failing at once if `proc` exits."""

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    def running() -> None:
        assert proc.poll() is None, f"{proc.args[0]} exited"

    wait_until(listening, timeout, f"something to listen on {port}", alive=running)


def digests_in_log(task_log: str) -> dict[str, str]:
    """``{NAME: sha256}`` from the "digest NAME=<sha256>" lines a test container printed into a task log."""
    digests = {}
    for line in task_log.splitlines():
        event = json.loads(line).get("event", "") if line.startswith("{") else ""
        if event.startswith("digest "):
            name, _, digest = event.removeprefix("digest ").partition("=")
            digests[name] = digest
    return digests


def airflow_base_env(home: Path, dags_folder: Path) -> dict[str, str]:
    """Environment for isolated ``airflow`` subprocesses: own AIRFLOW_HOME, SQLite, no inherited config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "OP_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "tests-only-jwt-secret-0123456789abcdef",
            "AIRFLOW__CORE__FERNET_KEY": "PTkIRwL-c46jgnaohlkkXfVikC-roKa95ipXfqST7JM=",
        }
    )
    return env


def run_airflow(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the airflow CLI in its own process group, output to files, and reap the whole group after.

    LocalExecutor can leave an idle worker behind after `dags test --use-executor` exits; with pipes that
    worker would keep communicate() waiting, so we read files and kill the group instead. Seen once while
    developing: `dags test --use-executor` logged "DagRun Finished" and then hung in LocalExecutor shutdown
    ("waiting for running tasks to finish") with no task left running. So once the run is finished we give
    the CLI 20 s to exit and then end it, taking the exit code from the run's final state.
    """
    airflow = Path(sys.executable).with_name("airflow")
    with tempfile.NamedTemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([str(airflow), *args], env=env, stdout=out, stderr=err, start_new_session=True)
        deadline = time.monotonic() + timeout
        finished_at: float | None = None
        returncode: int | None = None
        try:
            while (returncode := proc.poll()) is None:
                now = time.monotonic()
                if now > deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                if finished_at is None and "DagRun Finished:" in Path(out.name).read_text(errors="replace"):
                    finished_at = now
                if finished_at is not None and now - finished_at > 20:
                    final = Path(out.name).read_text(errors="replace").split("DagRun Finished:")[-1]
                    returncode = 0 if "state=success" in final.split("\n")[0] else 1
                    break
                time.sleep(0.2)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, returncode, out.read(), err.read())


@dataclass
class AirflowStack:
    """A migrated AIRFLOW_HOME with a running API server (tasks run through the real supervisor)."""

    home: Path
    env: dict[str, str]
    api_url: str

    @property
    def digests(self) -> Path:
        return self.home / "digests"

    def dags_test(
        self, dag_id: str, conf: dict[str, Any] | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        args = ["dags", "test", dag_id, "--use-executor"]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        return run_airflow(args, {**self.env, **extra_env})

    def task_logs(self, dag_id: str) -> dict[str, str]:
        """Task log files of the DAG, by task id (last run wins)."""
        logs: dict[str, str] = {}
        for path in sorted(
            (self.home / "logs" / f"dag_id={dag_id}").glob("run_id=*/task_id=*/attempt=*.log"), key=os.path.getmtime
        ):
            logs[path.parent.name.removeprefix("task_id=")] = path.read_text()
        return logs

    def db_dump(self) -> str:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return "\n".join(db.iterdump())


def _start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    airflow = Path(sys.executable).with_name("airflow")
    with log_path.open("w") as log:
        return subprocess.Popen([str(airflow), *args], env=env, stdout=log, stderr=log, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_api_server(env: dict[str, str], port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `airflow api-server` and wait (at most 120 s) until it answers."""
    server = _start(["api-server", "--port", str(port)], env, log_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v2/version", timeout=2).status_code == 200:
                return server, url
        assert server.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "API server did not start in 120 s"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def slack_standin() -> Iterator[SlackStandIn]:
    server = SlackStandIn()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def airflow_stack(
    tmp_path_factory: pytest.TempPathFactory, devvault_server: DevVaultServer, slack_standin: SlackStandIn
) -> Iterator[AirflowStack]:
    """AIRFLOW_HOME + API server; DAGs: example_dags/ and tests/dags/; secrets backend = the dev vault.

    Server processes read `[secrets] backend`; task processes fall back to it for `[workers]`.
    """
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"
    dags.mkdir()
    for dag_file in [*(REPO / "example_dags").glob("*.py"), *(TESTS / "dags").glob("*.py")]:
        (dags / dag_file.name).symlink_to(dag_file)
    digests = home / "digests"
    digests.mkdir()
    port = free_port()
    env = airflow_base_env(home, dags)
    env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SECRETS__BACKEND": "airflow_dts_provider.secrets.onepassword.OnePasswordBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
                {"connect_host": devvault_server.url, "vault": "Airflow Vault"}
            ),
            "AIRFLOW__CORE__XCOM_BACKEND": "airflow_dts_provider.xcom.backend.SecretMaskingXComBackend",
            "AIRFLOW__LOGGING__SECRET_MASK_ADAPTER": "airflow_dts_provider.secrets.masking.encoded_forms",
            "OP_CONNECT_TOKEN": TOKEN,
            "AIRFLOW_CONN_ONEPASSWORD_DEFAULT": json.dumps(
                {
                    "conn_type": "onepassword",
                    "host": devvault_server.url,
                    "password": TOKEN,
                    "extra": {"vault": "DTS Dev"},
                }
            ),
            # the token copied with its line ending (tests/dags/secret_hygiene_e2e.py)
            "AIRFLOW_CONN_ONEPASSWORD_NEWLINE": json.dumps(
                {"conn_type": "onepassword", "host": devvault_server.url, "password": TOKEN + "\r\n"}
            ),
            "DTS_E2E_DIGEST_DIR": str(digests),
            "DTS_DOCKER_URL": DOCKER_URL,
            # the team's Airflow 2 variables, used by the old-way contrast DAG
            "OP_CONNECT": devvault_server.url,
            "OP_API_TOKEN": TOKEN,
            # Slack: the team's connection id "slack" (API), a webhook, and one whose server is down
            "AIRFLOW_CONN_SLACK": json.dumps(
                {
                    "conn_type": "slack",
                    "password": "xoxb-test-token",
                    "extra": {"base_url": f"{slack_standin.url}/api/", "channel": "#dts-alerts"},
                }
            ),
            "AIRFLOW_CONN_SLACK_WEBHOOK": json.dumps(
                {"conn_type": "slackwebhook", "host": f"{slack_standin.url}/webhook", "password": "T000/B000/XXXX"}
            ),
            "AIRFLOW_CONN_SLACK_DOWN": json.dumps(
                {
                    "conn_type": "slack",
                    "password": "xoxb-test-token",
                    "extra": {"base_url": f"http://127.0.0.1:{free_port()}/api/"},
                }
            ),
            "ENVIRONMENT": "production",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    migrated = run_airflow(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    server, url = start_api_server(env, port, home / "api-server.log")
    yield AirflowStack(home, env, url)
    _stop(server)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    require(bool(found), f"PostgreSQL server binaries ({name}) are not installed")
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root, and CI is root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on loopback (Debian's server binaries), trust auth."""

    port: int
    data: Path | None = None  # the cluster's data folder and server options, to restart it
    options: str = ""

    def restart(self, down_for: float = 0) -> None:
        """Stop the server (fast shutdown: every connection is dropped), keep it down `down_for` s, start it."""
        self._pg_ctl("-m", "fast", "-w", "stop")
        time.sleep(down_for)
        self._pg_ctl("-w", "start")

    def _pg_ctl(self, *args: str) -> None:
        assert self.data is not None
        log = self.data.parent / "server.log"
        command = [_postgres_bin("pg_ctl"), "-D", str(self.data), "-o", self.options, "-l", str(log), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)

    def new_database(self, name: str) -> str:
        """Create database `name`; return its SQLAlchemy URL (psycopg2 driver, as the stack uses)."""
        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
        ) as c:
            c.autocommit = True
            c.cursor().execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as cluster:
        yield cluster


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """Start a cluster in a new /tmp folder; stop and remove it on exit."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="dts-pg-", dir="/tmp"))  # pytest's tmp is private to root
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start"]),
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield Postgres(port, data, options)
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
