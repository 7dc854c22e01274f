"""The provider inside Airflow itself: registration, and a DAG run through the real task supervisor."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_dts_provider.get_provider_info import get_provider_info
from tests.conftest import CANARY, REPO, AirflowStack, airflow_base_env, run_airflow


def test_provider_info_is_valid_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_provider_info_rejects_what_airflow_rejects() -> None:
    """The validation above can fail: a broken dict is caught by the same schema."""
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    broken = {**get_provider_info(), "connection-types": [{"hook-class-name": "x"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def cli_json(stdout: str) -> list[dict[str, str]]:
    """The JSON line of an `airflow ... --output json` command (warnings may precede it)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("[")))


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_cli")
    return airflow_base_env(home, home / "dags")


def test_airflow_providers_list_shows_the_package(cli_env: dict[str, str]) -> None:
    result = run_airflow(["providers", "list", "--output", "json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    providers = cli_json(result.stdout)
    ours = [p for p in providers if p["package_name"] == "airflow-dts-provider"]
    assert len(ours) == 1 and ours[0]["version"] == "0.1.0"
    assert "1Password" in ours[0]["description"]


def test_airflow_providers_hooks_shows_onepassword(cli_env: dict[str, str]) -> None:
    result = run_airflow(["providers", "hooks", "--output", "json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    hooks = {h["connection_type"]: h for h in cli_json(result.stdout)}
    assert hooks["onepassword"]["class"] == "airflow_dts_provider.hooks.onepassword.OnePasswordHook"
    assert hooks["onepassword"]["conn_id_attribute_name"] == "onepassword_conn_id"
    assert hooks["onepassword"]["package_name"] == "airflow-dts-provider"


def test_connection_form_fields_are_declared(cli_env: dict[str, str]) -> None:
    """conn-fields reach Airflow's providers manager (what the connection form is built from)."""
    code = (
        "import json; from airflow.providers_manager import ProvidersManager as P; p = P(); "
        "print(json.dumps({'widgets': sorted(k for k in p.connection_form_widgets if 'onepassword' in k), "
        "'behaviour': p.field_behaviours.get('onepassword')}))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    names = ("cache_ttl", "max_retries", "timeout", "total_timeout", "vault")
    assert info["widgets"] == [f"extra__onepassword__{n}" for n in names]
    assert info["behaviour"]["relabeling"]["password"] == "Connect token"


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_plugin_loads_once_without_import_errors(cli_env: dict[str, str], lazy: str) -> None:
    """Registered as an airflow.plugins entry point only: declaring it in the provider info too makes Airflow
    report "Plugin 'dts' already registered" as an import error when lazy_discover_providers is off."""
    code = (
        "import json; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': errors}))"
    )
    env = {**cli_env, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["names"].count("dts") == 1
    assert report["errors"] == {}


@pytest.fixture(scope="module")
def canary_run(airflow_stack: AirflowStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the hook example DAG on the canary item; returns (digest file, dags test console output)."""
    digest_file = tmp_path_factory.mktemp("canary") / "digest.txt"
    result = airflow_stack.dags_test(
        "example_onepassword_hook",
        conf={"vault": "Team Vault", "item": "Canary", "field": "secret", "digest_file": str(digest_file)},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return digest_file, result.stdout + result.stderr


def test_example_dag_reads_1password_through_the_hook(canary_run: tuple[Path, str]) -> None:
    """`airflow dags test --use-executor`: the task runs under the real supervisor and writes real logs."""
    digest_file, _ = canary_run
    assert digest_file.read_text() == hashlib.sha256(CANARY.encode()).hexdigest()


def test_canary_is_masked_in_task_logs_and_absent_from_the_db(
    canary_run: tuple[Path, str], airflow_stack: AirflowStack
) -> None:
    logs = airflow_stack.task_logs("example_onepassword_hook")
    assert "fetched Canary/secret: ***" in logs["read_one_field"]
    assert all(CANARY not in text for text in logs.values())
    dump = airflow_stack.db_dump()
    assert "read_required_secrets" in dump  # the dump holds the run (and its XCom of names)...
    assert CANARY not in dump  # ...but not the value


@pytest.mark.xfail(
    strict=True,
    reason="Airflow 3.3.2 LocalExecutor mirrors task output to its own console (subprocess_logs_to_stdout=True) "
    "through the core logging filter, which does not see masks registered at run time via MaskSecret. "
    "The task log file is masked (test above). Passes once Airflow masks that mirror too.",
)
def test_local_executor_console_mirror_is_masked(canary_run: tuple[Path, str]) -> None:
    _, console = canary_run
    assert "fetched Canary/secret" in console
    assert CANARY not in console


def test_example_dags_parse_without_errors(airflow_stack: AirflowStack) -> None:
    """Every file in example_dags/ imports cleanly and defines one DAG named after it."""
    code = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag; "
        "b = DagBag(sys.argv[1]); "
        "print(json.dumps({'errors': b.import_errors, 'dags': sorted(b.dag_ids)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "example_dags")],
        env=airflow_stack.env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    files = sorted(p.stem for p in (REPO / "example_dags").glob("*.py"))
    assert report["dags"] == sorted(f"example_{f.removesuffix('_example')}" for f in files)
