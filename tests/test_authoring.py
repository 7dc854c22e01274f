"""dts-airflow migrate / lint / preflight on a corpus shaped like the team's Airflow 2 DAG folder
(tests/data/airflow2_dags), with Airflow 3.3 itself importing the result and the dev vault serving
the corpus' secrets over HTTP."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_dts_provider.authoring.folder import resolve_target
from airflow_dts_provider.authoring.migrate import MigrationReport, migrate_folder, migrate_source
from airflow_dts_provider.devvault import DevVaultServer, VaultData
from tests.conftest import CANARY, TOKEN, AirflowStack, airflow_base_env, digests_in_log

#: Runs the airflow CLI in subprocesses: not part of scripts/test --quick.
pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "data" / "airflow2_dags"
CORPUS_VAULT = Path(__file__).parent / "data" / "airflow2_vault.yaml"
VAULT = "DTS Airflow 2"
DTS_AIRFLOW = str(Path(sys.executable).with_name("dts-airflow"))
DAG_FILES = sorted(p.name for p in CORPUS.glob("*.py"))
#: Every site the corpus seeds for a person, as (file, words the reason must contain).
HAND_ONLY = {
    ("atd_bash_secrets.py", "env= of a non-Docker task"),
    ("atd_xcom_reader.py", "read by another task"),
    ("atd_os_environ.py", "os.environ"),
    ("atd_execution_date.py", "execution_date }}, removed in Airflow 3"),
    ("atd_broken_syntax.py", "not valid Python"),
    ("atd_import_time_secret.py", "while the file is parsed"),
    ("utils/slack_operator.py", "airflow.contrib"),
}


@pytest.fixture(scope="module")
def corpus_vault() -> Iterator[DevVaultServer]:
    server = DevVaultServer(VaultData.load(CORPUS_VAULT), token=TOKEN).start()
    yield server
    server.stop()


def vault_values() -> list[str]:
    data = yaml.safe_load(CORPUS_VAULT.read_text())
    return [f["value"] for v in data["vaults"] for i in v["items"] for f in i["fields"] if len(f["value"]) >= 5]


def corpus_env(home: Path, server: DevVaultServer) -> dict[str, str]:
    """What a DAG-folder checkout sees on the team's hosts: OP_* set, the secrets backend on 1Password."""
    vault_id = next(v["id"] for v in VaultData.load(CORPUS_VAULT).vaults if v["name"] == VAULT)
    env = airflow_base_env(home, home / "dags")
    env.update(
        {
            "OP_CONNECT": server.url,  # the team's names, read by their old utils/onepassword.py
            "OP_API_TOKEN": TOKEN,
            "OP_VAULT_ID": vault_id,
            "AIRFLOW__SECRETS__BACKEND": "airflow_dts_provider.secrets.onepassword.OnePasswordBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connect_host": server.url, "vault": VAULT}),
            "OP_CONNECT_TOKEN": TOKEN,
            # the team's existing Slack connection: type HTTP, webhook host, the token as password
            "AIRFLOW_CONN_SLACK": json.dumps(
                {"conn_type": "http", "host": "https://hooks.slack.com/services", "password": "T000/B000/XXXX"}
            ),
            "AIRFLOW_CONN_DOCKER_DEFAULT": json.dumps({"conn_type": "docker", "host": "unix:///run/docker.sock"}),
        }
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DTS_AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MigrationReport]:
    """A copy of the corpus after `dts-airflow migrate --write` (through the console script)."""
    folder = tmp_path_factory.mktemp("dags") / "dags"
    shutil.copytree(CORPUS, folder)
    env = airflow_base_env(tmp_path_factory.mktemp("home"), folder)
    result = run_cli(["migrate", str(folder), "--write", "--json"], env)
    assert result.returncode == 0, result.stderr
    report = migrate_folder(CORPUS, resolve_target(CORPUS)[1])  # the same run in memory, for its objects
    assert json.loads(result.stdout)["files_changed"] == [f.path for f in report.changed_files]
    return folder, report


# -- migrate --------------------------------------------------------------------------------


def test_migrate_converts_every_provable_site_and_reports_the_rest(migrated: tuple[Path, MigrationReport]) -> None:
    folder, report = migrated
    assert report.sites_converted == 10
    found = {(f.path, f.reason) for f in report.left_for_you}
    for path, words in HAND_ONLY:
        assert any(p == path and words in reason for p, reason in found), (path, words, found)
    assert len(found) == len(HAND_ONLY), found
    assert report.unused_helpers == ["utils/slack_operator.py"]
    notes = " ".join(report.behaviour_changes())
    assert "fetched inside each Docker task" in notes
    assert "[dts] slack_alert_environments (default: production)" in notes
    signals = (folder / "atd_knack_signals.py").read_text()
    assert "get_env_vars" not in signals and "DockerOperator(" not in signals.replace("SecretDockerOperator(", "")
    assert signals.count("secrets=REQUIRED_SECRETS") == 2
    assert "auto_remove" not in signals, "True dropped: SecretDockerOperator removes containers with secrets"
    assert "    t1 >> t2\n" in signals
    assert "# records -> postgrest" in signals, "comments survive"
    vz = (folder / "atd_vz_crash_data.py").read_text()
    assert "log_params() >> cris_import >> map_refresh" in vz
    assert "secrets=CRIS_SECRETS" in vz and "secrets=MAP_SECRETS" in vz
    parking = (folder / "atd_parking_local_task.py").read_text()
    assert "load_dict" not in parking and "onepasswordconnectsdk" not in parking and 'auto_remove="never"' in parking
    assert "DagRun" not in (folder / "atd_signal_timing_dag_decorator.py").read_text()


def test_hand_only_sites_are_left_as_they_were(migrated: tuple[Path, MigrationReport]) -> None:
    folder, _ = migrated
    kept = {
        "atd_bash_secrets.py": ["env_vars = get_env_vars_task(REQUIRED_SECRETS)", "env=env_vars,",
                                "env_vars >> backup"],
        "atd_xcom_reader.py": ["env_vars = get_env_vars_task(REQUIRED_SECRETS)", "check_endpoint(env_vars)",
                               "environment=env_vars,"],
        "atd_os_environ.py": ["environment=dict(os.environ),"],
        "atd_execution_date.py": ["{{ execution_date.strftime('%Y-%m-%d') }}"],
        "atd_import_time_secret.py": ['SECRETS = get_env_vars({"MAPBOX_TOKEN"'],
    }  # fmt: skip
    for name, snippets in kept.items():
        text = (folder / name).read_text()
        for snippet in snippets:
            assert snippet in text, (name, snippet)
    assert (folder / "atd_broken_syntax.py").read_text() == (CORPUS / "atd_broken_syntax.py").read_text()


def test_migrate_is_idempotent(migrated: tuple[Path, MigrationReport]) -> None:
    folder, _ = migrated
    again = migrate_folder(folder, resolve_target(folder)[1])
    assert again.changed_files == []
    assert again.sites_converted == 0


def test_migrate_leaves_a_secrets_dict_changed_after_the_task_alone() -> None:
    source = (
        "from airflow.providers.docker.operators.docker import DockerOperator\n"
        "from utils.onepassword import get_env_vars_task\n"
        "S = {}\n"
        "env = get_env_vars_task(S)\n"
        "t = DockerOperator(task_id='t', image='i', environment=env)\n"
        "S.update({'A': {'opitem': 'x', 'opfield': 'y'}})\n"
    )
    result = migrate_source(source, "late.py")
    assert result.migrated == source
    assert [f.line for f in result.left_for_you] == [6]


def test_original_corpus_does_not_import_and_migrated_one_does(
    migrated: tuple[Path, MigrationReport], corpus_vault: DevVaultServer, tmp_path: Path
) -> None:
    """Airflow's own DagBag, in a fresh interpreter, with the DAG folder on sys.path as Airflow puts it."""
    folder, _ = migrated
    script = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "folder = sys.argv[1]\n"
        "sys.path.insert(0, folder)\n"
        "bag = DagBag(folder, bundle_path=folder)\n"
        "print(json.dumps({'errors': sorted(bag.import_errors), 'dags': sorted(bag.dag_ids)}))\n"
    )
    env = corpus_env(tmp_path, corpus_vault)

    def bag(path: Path) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    before = bag(CORPUS)
    assert before["errors"] == DAG_FILES and before["dags"] == [], "no Airflow 2 file imports on Airflow 3.3"
    after = bag(folder)
    assert after["errors"] == ["atd_broken_syntax.py"]
    assert len(after["dags"]) == len(DAG_FILES) - 1


def test_migrate_without_write_prints_a_diff_and_touches_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(CORPUS, folder)
    result = run_cli(["migrate", str(folder)], airflow_base_env(tmp_path, folder))
    assert result.returncode == 0, result.stderr
    assert "--- a/atd_knack_signals.py\n+++ b/atd_knack_signals.py" in result.stdout
    assert '-        auto_remove=True,\n+        auto_remove="success",' in result.stdout
    assert "Left for you (7):" in result.stderr and "dry run" in result.stderr
    for path in CORPUS.rglob("*.py"):
        assert (folder / path.relative_to(CORPUS)).read_text() == path.read_text()


@pytest.mark.parametrize("command", ["migrate", "lint", "preflight"])
def test_bad_paths_are_one_line_errors(command: str, tmp_path: Path) -> None:
    env = airflow_base_env(tmp_path, tmp_path)
    missing = run_cli([command, str(tmp_path / "nope")], env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"dts-airflow {command}: {tmp_path / 'nope'}: no such file or folder"
    (tmp_path / "notes.txt").write_text("x")
    not_python = run_cli([command, str(tmp_path / "notes.txt")], env)
    assert not_python.returncode == 2
    assert "not a Python file" in not_python.stderr and len(not_python.stderr.strip().splitlines()) == 1


# -- lint -----------------------------------------------------------------------------------


def test_lint_finds_exactly_the_seeded_violations(
    migrated: tuple[Path, MigrationReport], corpus_vault: DevVaultServer, tmp_path: Path
) -> None:
    folder, _ = migrated
    corpus_vault.reset()
    result = run_cli(["lint", str(folder), "--json"], corpus_env(tmp_path, corpus_vault))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    found = {(v["path"], v["rule"], v["severity"]) for v in report["violations"]}
    assert found == {
        ("atd_broken_syntax.py", "import-error", "error"),
        ("atd_bash_secrets.py", "xcom-secrets", "error"),
        ("atd_xcom_reader.py", "xcom-secrets", "error"),
        ("atd_execution_date.py", "airflow2-removed", "error"),
        ("atd_import_time_secret.py", "import-time-lookup", "error"),
        ("atd_missing_conventions.py", "failure-callback", "error"),
        ("atd_missing_conventions.py", "owner", "warning"),
        ("atd_no_repo_tag.py", "repo-tag", "error"),
        ("atd_os_environ.py", "environment-passthrough", "error"),
    }
    lookup = next(v for v in report["violations"] if v["rule"] == "import-time-lookup")
    source_lines = (folder / "atd_import_time_secret.py").read_text().splitlines()
    assert (
        "socrata_dataset_id" in source_lines[lookup["line"] - 1] or "get_env_vars" in source_lines[lookup["line"] - 1]
    )
    assert "Variable.get('socrata_dataset_id')" in lookup["message"]
    assert "request(s) to 1Password Connect" in lookup["message"]
    assert "stored in the metadata DB unmasked" in lookup["message"], "why it is an error (issue 27, finding 5)"
    assert corpus_vault.request_count > 0, "the file really asked Connect while it was imported"
    assert set(report["parse_seconds"]) == set(DAG_FILES)
    syntax = next(v for v in report["violations"] if v["rule"] == "import-error")
    assert syntax["line"] == 5 and "never closed" in syntax["message"]
    for value in vault_values():
        assert value not in result.stdout + result.stderr


def test_lint_flags_the_airflow2_corpus(corpus_vault: DevVaultServer, tmp_path: Path) -> None:
    result = run_cli(["lint", str(CORPUS), "--json"], corpus_env(tmp_path, corpus_vault))
    assert result.returncode == 1
    violations = json.loads(result.stdout)["violations"]
    assert {v["path"] for v in violations if v["rule"] == "import-error"} == set(DAG_FILES)
    removed = {v["path"] for v in violations if v["rule"] == "airflow2-removed"}
    assert removed == set(DAG_FILES) - {"atd_broken_syntax.py"}


def test_lint_severity_comes_from_pyproject(
    migrated: tuple[Path, MigrationReport], corpus_vault: DevVaultServer, tmp_path: Path
) -> None:
    folder, _ = migrated
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.dts-airflow.lint]\nrepo-tag = "off"\nowner = "error"\nparse-time-budget = 0.000001\n')
    result = run_cli(["lint", str(folder), "--json", "--config", str(config)], corpus_env(tmp_path, corpus_vault))
    rules = {(v["rule"], v["severity"]) for v in json.loads(result.stdout)["violations"]}
    assert ("owner", "error") in rules and ("parse-time", "warning") in rules
    assert not any(rule == "repo-tag" for rule, _ in rules)
    config.write_text('[tool.dts-airflow.lint]\nrepo-tag = "fatal"\n')
    bad = run_cli(["lint", str(folder), "--config", str(config)], corpus_env(tmp_path, corpus_vault))
    assert bad.returncode == 2
    assert "repo-tag = 'fatal': use one of error, warning, off" in bad.stderr


# -- preflight ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preflight_run(
    migrated: tuple[Path, MigrationReport], corpus_vault: DevVaultServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str], dict[str, Any]]:
    folder, _ = migrated
    env = corpus_env(tmp_path_factory.mktemp("home"), corpus_vault)
    text = run_cli(["preflight", str(folder)], env)
    by_item = run_cli(["preflight", str(folder), "--by-item"], env)
    data = json.loads(run_cli(["preflight", str(folder), "--json", "--by-item"], env).stdout)
    return text, by_item, data


def test_preflight_finds_exactly_the_seeded_missing_secrets(preflight_run: tuple) -> None:
    text, _, data = preflight_run
    assert text.returncode == 1
    missing = {(c["dag_id"], c["name"], c["reference"]) for c in data["checks"] if c["status"] != "ok"}
    assert {(dag, name) for dag, name, _ in missing} == {
        ("atd_knack_containers", "AGOL_USERNAME"),
        ("atd_knack_containers", "SOCRATA_SECRET"),
        ("atd_knack_containers", "docker_conn_id"),
    }
    checked = {(c["kind"], c["reference"]) for c in data["checks"]}
    assert ("variable", "socrata_dataset_id") in checked, "{{ var.value.x }} in a templated field"
    assert ("connection", "slack") in checked, "the Slack drop-ins' connection"
    assert ("connection", "docker_default") in checked
    hints = {c["name"]: c["hint"] for c in data["checks"] if c["status"] != "ok"}
    assert "Did you mean: 'ArcGIS Online (AGOL) Scripts Publisher'?" in hints["AGOL_USERNAME"]
    assert "Fields by section: socrata: apiKeyId, apiKeySecret, appToken" in hints["SOCRATA_SECRET"]
    assert hints["docker_conn_id"] == "not found in: OnePasswordBackend, EnvironmentVariablesBackend, MetastoreBackend"
    assert data["import_errors"] == ["atd_broken_syntax.py"]


def test_preflight_prints_no_value(preflight_run: tuple) -> None:
    text, by_item, data = preflight_run
    everything = text.stdout + text.stderr + by_item.stdout + by_item.stderr + json.dumps(data)
    assert CANARY in CORPUS_VAULT.read_text()
    for value in vault_values():
        assert value not in everything, value


def test_preflight_by_item_lists_every_task_using_an_item(preflight_run: tuple) -> None:
    _, by_item, data = preflight_run
    vault_id = next(v["id"] for v in VaultData.load(CORPUS_VAULT).vaults if v["name"] == VAULT)  # OP_VAULT_ID
    users = data["by_item"][f"{vault_id} / Knack AMD Data Tracker"]
    assert set(users) == {
        "atd_knack_signals.atd_knack_signals_to_postgrest",
        "atd_knack_signals.atd_knack_signals_to_socrata",
        "atd_knack_containers.knack_view_1_to_agol",
        "atd_knack_containers.knack_view_2_to_agol",
        "atd_knack_containers.knack_view_3_to_agol",
        "atd_toolbox_env.print_env_digests",
    }
    header = re.search(rf"^{vault_id} / Knack AMD Data Tracker: (.*)\n    atd_\w+\.\w+$", by_item.stdout, re.M)
    assert header is not None, by_item.stdout
    assert re.fullmatch(r"ok; fields: [\w., ]+; 6 task\(s\)", header.group(1)), header.group(1)


# -- a migrated Docker DAG runs with the environment the old one gave its container ------------


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migrated_docker_dag_gives_the_container_the_same_environment(
    migrated: tuple[Path, MigrationReport],
    corpus_vault: DevVaultServer,
    airflow_stack: AirflowStack,
    docker_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, _ = migrated
    env = corpus_env(tmp_path, corpus_vault)
    # Before: the team's own utils/onepassword.get_env_vars (the SDK's load_dict) on the DAG's REQUIRED_SECRETS.
    for name in ("OP_CONNECT", "OP_API_TOKEN", "OP_VAULT_ID"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("ENVIRONMENT", airflow_stack.env["ENVIRONMENT"])
    secrets = load_module(folder / "atd_toolbox_env.py", "migrated_toolbox").REQUIRED_SECRETS
    old_utils = load_module(CORPUS / "utils" / "onepassword.py", "team_utils_onepassword")
    before = old_utils.get_env_vars(copy.deepcopy(secrets))
    assert before["CANARY"] == CANARY
    expected = {name: hashlib.sha256(value.encode()).hexdigest() for name, value in before.items()}

    # After: the migrated file alone in a DAG folder, run by `airflow dags test` on the Podman engine.
    dags = tmp_path / "migrated_dags"
    dags.mkdir()
    shutil.copy(folder / "atd_toolbox_env.py", dags)
    onepassword = {"conn_type": "onepassword", "host": corpus_vault.url, "password": TOKEN, "extra": {"vault": VAULT}}
    result = airflow_stack.dags_test(
        "atd_toolbox_env",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW_CONN_ONEPASSWORD_DEFAULT=json.dumps(onepassword),
        ATD_TOOLBOX_IMAGE="localhost/dts-busybox:latest",
        DOCKER_HOST=docker_url,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    log = airflow_stack.task_logs("atd_toolbox_env")["print_env_digests"]
    assert digests_in_log(log) == expected
    assert CANARY not in log
    assert CANARY not in airflow_stack.db_dump()


# -- issue 28: preflight sees the secrets of tasks migrate left, and prints per problem -------------------
def test_preflight_counts_secrets_passed_through_xcom_and_lists_every_task_by_item(
    corpus_vault: DevVaultServer, tmp_path: Path
) -> None:
    """The round-2 corpus migrated: its Bash and subclass DAGs still fetch secrets in a task of their own
    and pass them on through XCom. Preflight checks those secrets and lists every task they reach."""
    shapes = Path(__file__).parent / "data" / "airflow2_shapes"
    shutil.copytree(shapes.parent / "airflow2_shapes_outside", tmp_path / "airflow2_shapes_outside")
    folder = tmp_path / "airflow2_shapes"
    shutil.copytree(shapes, folder, symlinks=True)
    env = corpus_env(tmp_path / "home", corpus_vault)
    assert run_cli(["migrate", str(folder), "--write"], env).returncode == 0
    data = json.loads(run_cli(["preflight", str(folder), "--json", "--by-item"], env).stdout)
    uses = {(c["dag_id"], c["task_id"], c["name"]) for c in data["checks"] if c["kind"] == "1password"}
    assert {
        ("atd_team_operator", "get_env_vars", "MAPBOX_TOKEN"),
        ("atd_team_operator", "tiles", "MAPBOX_TOKEN (XCom of get_env_vars)"),
        ("atd_bash_two_step", "get_env_vars", "PGPASSWORD"),
        ("atd_bash_two_step", "with_defaults", "PGPASSWORD (XCom of get_env_vars)"),
        ("atd_bash_two_step", "backup", "PGPASSWORD (XCom of get_env_vars)"),
        ("atd_local_load_dict", "publish", "SOCRATA_APP_TOKEN"),
    } <= uses
    users = next(tasks for where, tasks in data["by_item"].items() if where.endswith(" / Warehouse Postgres"))
    assert users == ["atd_bash_two_step.backup", "atd_bash_two_step.get_env_vars", "atd_bash_two_step.with_defaults"]
    text = run_cli(["preflight", str(folder)], env).stdout.splitlines()
    problems = {(c["status"], c["reference"], c["where"], c["hint"]) for c in data["checks"] if c["status"] != "ok"}
    assert text[0].startswith(f"dts-airflow preflight: {len(data['checks'])} secret use(s)")
    assert f"; {len(problems)} distinct problem(s)" in text[0]
    assert len([line for line in text if line.startswith(("MISSING: ", "ERROR: "))]) == len(problems)


def test_lint_survives_os_exit_and_points_at_the_lines_that_matter(
    corpus_vault: DevVaultServer, tmp_path: Path
) -> None:
    """Issue 28, finding 10: os._exit(0) in a DAG file ended lint with exit 0 and an empty report; import
    errors and top-level lookups pointed at line 1, and so did a repo-tag finding for a computed dag_id."""
    folder = tmp_path / "airflow2_shapes"
    shutil.copytree(Path(__file__).parent / "data" / "airflow2_shapes", folder, symlinks=True)
    (folder / "atd_linked.py").unlink()  # the symlink's target is not copied here
    result = run_cli(["lint", str(folder), "--json"], corpus_env(tmp_path / "home", corpus_vault))
    assert result.returncode == 1, result.stderr[-2000:]
    by_rule = {(v["path"], v["rule"]): v for v in json.loads(result.stdout)["violations"]}
    exited = by_rule[("atd_exits.py", "import-error")]
    assert "os._exit(0)" in exited["message"] and exited["line"] == 9
    assert by_rule[("atd_lookup_line.py", "import-error")]["line"] == 8
    assert by_rule[("atd_lookup_line.py", "import-time-lookup")]["line"] == 8
    assert by_rule[("atd_computed_id.py", "repo-tag")]["line"] == 7
    assert {p for p, rule in by_rule if rule == "import-error"} >= {"atd_exits.py", "atd_lookup_line.py"}
