"""docker/airflow-init.sh, the compose stack's start-up step, run here against a real Postgres.

The script is the one the image runs (COPY docker/airflow-init.sh); here it runs with this
venv's Airflow instead of the image's, on a Postgres cluster started for the test (Debian's).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import EXAMPLE_FERNET_KEY, REPO, Postgres
from tests.conftest import TEST_FERNET_KEY as GOOD_FERNET_KEY

#: Runs the airflow CLI in subprocesses: not part of scripts/test --quick.
pytestmark = pytest.mark.slow

INIT = REPO / "docker" / "airflow-init.sh"
GOOD_PASSWORD = "correct-horse-battery"
GOOD_DB_PASSWORD = "staple-of-the-database"
NO_DATABASE = "postgresql+psycopg2://airflow:{}@127.0.0.1:1/none"

DAGS = {
    "paused_dag": "",
    "unpaused_dag": "",
    "starts_unpaused_dag": ", is_paused_upon_creation=False",
}


def init_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    for dag_id, extra in DAGS.items():
        (dags / f"{dag_id}.py").write_text(
            "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
            f"with DAG({dag_id!r}, schedule=None{extra}):\n    EmptyOperator(task_id='t')\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "OP_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": GOOD_FERNET_KEY,
            "_AIRFLOW_WWW_USER_PASSWORD": GOOD_PASSWORD,
        }
    )
    env.update(overrides)
    return env


def run_init(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INIT), *args], env=env, capture_output=True, text=True, timeout=300)


def pause_states(url: str) -> dict[str, bool]:
    dsn = url.replace("postgresql+psycopg2://", "postgresql://")
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT dag_id, is_paused FROM dag")
        return dict(cursor.fetchall())


@pytest.fixture(scope="module")
def postgres_url(postgres: Postgres) -> str:
    return postgres.new_database("airflow_init")


def test_pauses_every_dag_in_development_only(tmp_path: Path, postgres_url: str) -> None:
    # the cluster trusts loopback, so any password connects; production wants a real-looking one
    production_url = postgres_url.replace("://airflow:airflow@", f"://airflow:{GOOD_DB_PASSWORD}@")
    env = init_env(tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=production_url, ENVIRONMENT="production")
    first = run_init(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ENVIRONMENT=production: DAG pause states left as they are" in first.stdout
    # the auth manager here is Airflow's default (SimpleAuthManager); the image's is FAB
    assert "not FAB: no admin user to create" in first.stdout

    # DAGs reach the metadata DB the way the DAG processor puts them there, then one is unpaused by hand
    parse = subprocess.run(["airflow", "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=300)
    assert parse.returncode == 0, parse.stdout + parse.stderr
    unpause = subprocess.run(["airflow", "dags", "unpause", "unpaused_dag"], env=env, capture_output=True, text=True)
    assert unpause.returncode == 0, unpause.stderr
    before = pause_states(postgres_url)
    assert before == {"paused_dag": True, "unpaused_dag": False, "starts_unpaused_dag": False}

    production = run_init(env)
    assert production.returncode == 0, production.stdout + production.stderr
    assert pause_states(postgres_url) == before

    development = run_init(env | {"ENVIRONMENT": "development"})
    assert development.returncode == 0, development.stdout + development.stderr
    assert "pausing every DAG" in development.stdout
    assert pause_states(postgres_url) == dict.fromkeys(DAGS, True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"AIRFLOW__CORE__FERNET_KEY": ""}, "no Fernet key"),
        ({"AIRFLOW__CORE__FERNET_KEY": EXAMPLE_FERNET_KEY}, "is the published example key"),
        ({"AIRFLOW__CORE__FERNET_KEY": f"{GOOD_FERNET_KEY},{EXAMPLE_FERNET_KEY}"}, "is the published example key"),
        ({"AIRFLOW__CORE__FERNET_KEY": "not-a-fernet-key-at-all"}, "is not a valid Fernet key"),
        ({"_AIRFLOW_WWW_USER_PASSWORD": ""}, "no admin password"),
        ({"_AIRFLOW_WWW_USER_PASSWORD": "Airflow"}, "well-known default"),
        ({"_AIRFLOW_WWW_USER_PASSWORD": "short-pw"}, "shorter than 12 characters"),
        # .env.example's POSTGRES_PASSWORD, as the production compose file builds the URL from it
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE.format("airflow")}, "POSTGRES_PASSWORD (the metadata"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE.format("Postgres")}, "is a well-known default"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE.format("pg-short")}, "is shorter than 12 characters"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@127.0.0.1:1/none"}, "URL has no password"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    # No database behind this URL, and no --check: the refusal must come before anything touches one.
    settings = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE.format(GOOD_DB_PASSWORD), **overrides}
    env = init_env(tmp_path, ENVIRONMENT="production", **settings)
    result = run_init(env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "migrat" not in result.stdout.lower()
    for value in overrides.values():  # the error names the setting, never its value
        if value:
            assert value not in result.stdout + result.stderr
    for password in ("Postgres", "pg-short"):
        assert password not in result.stdout + result.stderr


def test_checks_pass_good_settings(tmp_path: Path) -> None:
    rotated = init_env(
        tmp_path,
        ENVIRONMENT="production",
        AIRFLOW__CORE__FERNET_KEY=f"{GOOD_FERNET_KEY},{'A' * 43}=",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=NO_DATABASE.format(GOOD_DB_PASSWORD),
    )
    result = run_init(rotated, "--check")
    assert result.returncode == 0, result.stderr
    assert "production settings checked" in result.stdout
    # a laptop may use the example key and the default password
    laptop = init_env(
        tmp_path,
        ENVIRONMENT="development",
        AIRFLOW__CORE__FERNET_KEY=EXAMPLE_FERNET_KEY,
        _AIRFLOW_WWW_USER_PASSWORD="airflow",
    )
    result = run_init(laptop, "--check")
    assert result.returncode == 0, result.stderr
    assert "production settings checked" not in result.stdout
    # ... and the example database password
    laptop["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = NO_DATABASE.format("airflow")
    assert run_init(laptop, "--check").returncode == 0


def readme_inner_command(marker: str) -> str:
    """The `sh -c '...'` part of README's backup or restore command (what runs in the container)."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"docker compose exec -T postgres sh -c '([^']*" + re.escape(marker) + r"[^']*)'", readme)
    assert match, f"README has no {marker} command"
    return match[1]


@pytest.fixture(scope="module")
def populated_url(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A metadata DB of its own, migrated by airflow-init and holding the DAGs (tests run in random order)."""
    url = postgres.new_database("airflow_backup")
    env = init_env(tmp_path_factory.mktemp("backup"), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url)
    init = run_init(env)
    assert init.returncode == 0, init.stdout + init.stderr
    parse = subprocess.run(["airflow", "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=300)
    assert parse.returncode == 0, parse.stdout + parse.stderr
    return url


def test_readme_backup_and_restore_round_trip(postgres: Postgres, populated_url: str, tmp_path: Path) -> None:
    """README's one-command backup, restored with README's command, gives back the same metadata."""
    source = populated_url.rsplit("/", 1)[1]
    restored = postgres.new_database("restored").rsplit("/", 1)[1]
    env = {"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "POSTGRES_USER": "airflow"}
    dump = subprocess.run(
        ["sh", "-c", readme_inner_command("pg_dump")],
        env=env | {"POSTGRES_DB": source},
        capture_output=True,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr
    assert b"CREATE TABLE public.dag " in dump.stdout
    restore = subprocess.run(
        ["sh", "-c", readme_inner_command("psql")],
        env=env | {"POSTGRES_DB": restored},
        input=dump.stdout,
        capture_output=True,
        timeout=120,
    )
    assert restore.returncode == 0, restore.stderr

    def snapshot(database: str) -> tuple[object, ...]:
        url = f"postgresql://airflow@127.0.0.1:{postgres.port}/{database}"
        with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            tables = cursor.fetchone()
            cursor.execute("SELECT dag_id, is_paused FROM dag ORDER BY dag_id")
            dags = cursor.fetchall()
            cursor.execute("SELECT version_num FROM alembic_version")
            return (tables, dags, cursor.fetchall())

    assert snapshot(restored) == snapshot(source)
    assert snapshot(source)[1], "the source DB should hold the test DAGs"
