"""Day one on the team's host: their Airflow 2.9 database upgraded in place by the containers, and the way back.

What the team has: a metadata database written by Airflow 2.9.3 (FAB users, connections encrypted
with their Fernet key, variables, DAG runs) and a `.env` with the variables of their README. A side
environment with Airflow 2.9.3 itself (tests/data/airflow2/requirements.lock, from PyPI) writes such
a database into a Postgres on the host, which plays the old stack; the test then follows README's
"Switching the host from Airflow 2" step by step on the containers: backup, restore into the compose
Postgres volume, the migrated DAG files, `docker compose up -d`, the checks, and the rollback drill
(the pre-upgrade backup restored into a fresh volume and read again by Airflow 2.9.3).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLE_FERNET_KEY, REPO, TESTS, Postgres, _as_postgres, _postgres_bin, free_port
from tests.container_engine import Engine
from tests.containers import ContainerStack
from tests.test_containers import readme_command, run_dag

#: The first test of the module also waits for the images and the stack (about 4 minutes on 2 cores).
pytestmark = pytest.mark.timeout(1500)

AIRFLOW2 = TESTS / "data" / "airflow2"
OLD_DAGS = ("team_bash", "team_python", "team_taskflow")
#: The users of the old UI: the admin changed the password README's .env gave it long ago.
USERS = {"admin": ("Admin", "admin-password-changed-in-2024"), "analyst": ("Viewer", "analyst-old-password-1")}
ENV_ADMIN_PASSWORD = "initial-admin-password-from-env"
CONNECTIONS = {
    "team_warehouse": "postgres://reader:old-warehouse-pass-7d1e@db.example.invalid:5432",
    "team_socrata": "http://:old-socrata-c3a9@data.example.invalid",
    "team_slack": "http://:T000%2FB000%2Fold-webhook-5b2f@hooks.slack.com/services?channel=%23dts",
}
PASSWORDS = {
    "team_warehouse": "old-warehouse-pass-7d1e",
    "team_socrata": "old-socrata-c3a9",
    "team_slack": "T000/B000/old-webhook-5b2f",
}
VARIABLES = {"team_dataset_id": "abcd-1234", "team_config": '{"batch": 500}'}
RUNS = [
    (dag, f"2024-07-{day:02d}")
    for dag, days in zip(OLD_DAGS, ([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]), strict=True)
    for day in days
]


@dataclass
class Airflow2:
    """Airflow 2.9.3 in a virtualenv of its own, pointed at one database."""

    bin: Path
    env: dict[str, str]

    def __call__(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url} if url else {})}
        result = subprocess.run(
            [str(self.bin / "airflow"), *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result


@pytest.fixture(scope="module")
def airflow2(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Airflow2:
    """The side environment, and the team's database written by it (in the host's Postgres)."""
    tmp = tmp_path_factory.mktemp("airflow2")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [
            str(uv),
            "pip",
            "sync",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            str(AIRFLOW2 / "requirements.lock"),
        ],
        check=True,
        timeout=900,
    )
    dags = tmp / "dags"
    shutil.copytree(AIRFLOW2 / "dags", dags)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp),
        "AIRFLOW_HOME": str(tmp / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # their README's key: the old connections are encrypted with it
        "AIRFLOW__CORE__FERNET_KEY": EXAMPLE_FERNET_KEY,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.new_database("team_airflow2"),
    }
    airflow = Airflow2(venv / "bin", env)
    assert airflow("version").stdout.strip() == "2.9.3"
    airflow("db", "migrate")
    airflow("sync-perm")  # the roles, as the old webserver made them at its first start
    for name, (role, password) in USERS.items():
        names = ["--firstname", name, "--lastname", "DTS", "--email", f"{name}@example.invalid"]
        airflow("users", "create", "--username", name, "--password", password, "--role", role, *names)
    for conn_id, uri in CONNECTIONS.items():
        airflow("connections", "add", conn_id, "--conn-uri", uri)
    for key, value in VARIABLES.items():
        airflow("variables", "set", key, value)
    airflow("dags", "reserialize")
    with ThreadPoolExecutor(3) as pool:
        for result in pool.map(lambda run: airflow("dags", "test", *run), RUNS):
            assert "state=success" in result.stdout + result.stderr
    return airflow


def team_env(checkout: Path) -> str:
    """The `.env` of the team's README (Airflow 2 era), key for key; 1Password is the dev vault here."""
    return f"""AIRFLOW_UID=0
ENVIRONMENT=development
_AIRFLOW_WWW_USER_USERNAME=admin
_AIRFLOW_WWW_USER_PASSWORD={ENV_ADMIN_PASSWORD}
AIRFLOW_PROJ_DIR={checkout}
# this fernet key is for testing purposes only
_AIRFLOW__CORE__FERNET_KEY={EXAMPLE_FERNET_KEY}
_AIRFLOW__WEBSERVER__BASE_URL=http://localhost:8080
OP_API_TOKEN=dev-token-not-secret
OP_CONNECT=http://dev-vault:8089
OP_VAULT_ID=DTS Dev
DOCKER_HUB_USERNAME=dts-bot
DOCKER_HUB_TOKEN=dckr_pat_not-a-real-token
"""


@dataclass
class Switched:
    stack: ContainerStack
    backup: Path
    tmp: Path


def pg_dump_gz(postgres: Postgres, database: str, target: Path) -> None:
    """The old stack's backup (README's backup command, against the Postgres the old stack used)."""
    dump = subprocess.run(
        _as_postgres(
            [_postgres_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "airflow", database]
        ),
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    target.write_bytes(gzip.compress(dump))


@pytest.fixture(scope="module")
def switched(
    tmp_path_factory: pytest.TempPathFactory, container_engine: Engine, airflow2: Airflow2, postgres: Postgres
) -> Iterator[Switched]:
    """README's switch, step by step, on the containers; the stack stays up for the checks."""
    tmp = tmp_path_factory.mktemp("switch")
    # 1. Backup of the old database while the old stack runs.
    backup = tmp / "airflow-db-pre-upgrade.sql.gz"
    pg_dump_gz(postgres, airflow2.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1], backup)
    # 2. The DAG files moved to Airflow 3 in the checkout the .env points at.
    checkout = tmp / "atd-airflow"
    shutil.copytree(AIRFLOW2 / "dags", checkout / "dags")
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("dts-airflow")), "migrate", str(checkout / "dags"), "--write"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    # 3. The team's .env as it is; the ports of this test and the engine's socket come from the environment.
    env_file = tmp / ".env"
    env_file.write_text(team_env(checkout))
    airflow_port = str(free_port())
    environment = {
        "AIRFLOW_PORT": airflow_port,
        "FLOWER_PORT": str(free_port()),
        "DOCKER_SOCKET": str(container_engine.socket),
    }
    stack = ContainerStack(
        container_engine,
        REPO,
        {**environment, "_AIRFLOW_WWW_USER_PASSWORD": ENV_ADMIN_PASSWORD},
        env_file,
        project="dts-tests-switch",
        environment=environment,
        writes_env_file=False,
    )
    stack.down()  # what an interrupted run left
    try:
        stack.build()
        # 4. The old database into the new stack's Postgres volume, with README's restore command.
        stack.compose("up", "-d", "--wait", "postgres")
        stack.sh(readme_command(r"gunzip -c FILE \| docker compose exec -T postgres").replace("FILE", str(backup)))
        # 5. Everything else: airflow-init migrates the database before any other Airflow service starts.
        stack.up()
        yield Switched(stack, backup, tmp)
    finally:
        stack.down()


def psql(stack: ContainerStack, query: str) -> str:
    return stack.exec("postgres", "psql", "-At", "-U", "airflow", "airflow", "-c", query).stdout.strip()


def token(stack: ContainerStack, user: str, password: str) -> httpx.Response:
    ui = f"http://127.0.0.1:{stack.environment['AIRFLOW_PORT']}"
    return httpx.post(f"{ui}/auth/token", json={"username": user, "password": password}, timeout=30)


def client(stack: ContainerStack, user: str = "admin") -> httpx.Client:
    response = token(stack, user, USERS[user][1])
    assert response.status_code in (200, 201), response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    return httpx.Client(
        base_url=f"http://127.0.0.1:{stack.environment['AIRFLOW_PORT']}/api/v2", headers=headers, timeout=30
    )


def test_airflow_init_migrated_the_database_and_kept_the_admin(switched: Switched) -> None:
    init = switched.stack.logs("airflow-init")
    assert "airflow-init: done" in init
    assert "Database migrating done!" in init or "Database migrat" in init, init[-3000:]
    assert "already exist" in init  # `users create` left the old admin alone
    assert psql(switched.stack, "SELECT username FROM ab_user ORDER BY username").split() == sorted(USERS)


def test_both_users_log_in_with_their_old_passwords(switched: Switched) -> None:
    for user, (_, password) in USERS.items():
        assert token(switched.stack, user, password).status_code in (200, 201), user
    # no password reset: the .env's initial password is not the admin's
    assert token(switched.stack, "admin", ENV_ADMIN_PASSWORD).status_code == 401


def test_connections_and_variables_decrypt_with_the_old_fernet_key(switched: Switched) -> None:
    for conn_id, password in PASSWORDS.items():
        shown = switched.stack.exec("airflow-worker", "airflow", "connections", "get", conn_id, "-o", "json").stdout
        (conn,) = json.loads(shown[shown.index("[") :])
        assert conn["password"] == password, conn_id
    api = client(switched.stack)
    for key, value in VARIABLES.items():
        assert api.get(f"/variables/{key}").json()["value"] == value


def test_every_old_run_is_visible_through_the_api(switched: Switched) -> None:
    runs = client(switched.stack, "analyst").get("/dags/~/dagRuns", params={"limit": 100}).json()["dag_runs"]
    old = sorted((r["dag_id"], r["logical_date"][:10]) for r in runs if r["dag_run_id"].startswith("manual__2024-07-"))
    assert old == sorted(RUNS)
    assert {r["state"] for r in runs if r["dag_run_id"].startswith("manual__2024-07-")} == {"success"}


def test_the_migrated_dag_files_parse_and_run(switched: Switched) -> None:
    api = client(switched.stack)
    assert run_dag(api, "team_bash")[1] == "success"
    assert api.get("/importErrors").json()["total_entries"] == 0
    assert {d["dag_id"] for d in api.get("/dags").json()["dags"]} >= set(OLD_DAGS)


def test_the_rollback_drill_reads_the_pre_upgrade_backup_with_airflow_2(switched: Switched, airflow2: Airflow2) -> None:
    """README's rollback: the pre-upgrade backup restored into a fresh volume; Airflow 2.9.3 reads it as before."""
    port = free_port()
    publish = switched.tmp / "publish-postgres.yaml"
    publish.write_text(f'services:\n  postgres:\n    ports: ["127.0.0.1:{port}:5432"]\n')
    fresh = ContainerStack(
        switched.stack.engine,
        REPO,
        switched.stack.settings,
        switched.stack.env_file,
        project="dts-tests-rollback",
        environment=switched.stack.environment,
        writes_env_file=False,
        extra_files=(publish,),
    )
    fresh.down()
    try:
        fresh.compose("up", "-d", "--wait", "postgres")
        fresh.sh(
            readme_command(r"gunzip -c FILE \| docker compose exec -T postgres").replace("FILE", str(switched.backup))
        )
        url = f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{port}/airflow"
        airflow2("db", "check-migrations", "--migration-wait-timeout", "1", url=url)
        assert sorted(
            line.split("|")[1].strip()
            for line in airflow2("users", "list", url=url).stdout.splitlines()[2:]
            if "|" in line
        ) == sorted(USERS)
        conn = json.loads(airflow2("connections", "get", "team_warehouse", "-o", "json", url=url).stdout)[0]
        assert conn["password"] == "old-warehouse-pass-7d1e"
        listed = airflow2("dags", "list-runs", "-d", "team_bash", "-o", "json", url=url).stdout
        assert len(json.loads(listed[listed.index("[") :])) == 4
    finally:
        fresh.compose("down", "--volumes", check=False)
