"""The provider inside Airflow itself: a DAG run through the real task supervisor, masking, parsing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CANARY, REPO, AirflowStack


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
