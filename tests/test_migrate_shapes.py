"""Issue 28: `dts-airflow migrate` on the shapes of the team's real folder (tests/data/airflow2_shapes/).

In-process runs of the real migration over a copy of the corpus (symlink kept as a symlink); the
console script and Airflow's own DagBag over the first corpus are in tests/test_authoring.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow_dts_provider.authoring.folder import resolve_target
from airflow_dts_provider.authoring.migrate import MigrationReport, migrate_folder, migrate_source, write

TESTS = Path(__file__).parent
CORPUS = TESTS / "data" / "airflow2_shapes"
OUTSIDE = TESTS / "data" / "airflow2_shapes_outside"


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, MigrationReport]:
    """A copy of the corpus (and of the folder its symlink points into) after migrate and write."""
    shutil.copytree(OUTSIDE, tmp_path / OUTSIDE.name)
    folder = tmp_path / CORPUS.name
    shutil.copytree(CORPUS, folder, symlinks=True)
    report = migrate_folder(folder, resolve_target(folder)[1])
    write(report, folder)
    return folder, report


def left(report: MigrationReport, path: str) -> list[str]:
    return [f.reason for f in report.left_for_you if f.path == path]


def test_a_task_returning_the_teams_one_argument_load_dict_is_converted(written: tuple[Path, MigrationReport]) -> None:
    folder, report = written
    text = (folder / "atd_local_load_dict.py").read_text()
    assert "publish = SecretDockerOperator(" in text and "secrets=REQUIRED_SECRETS," in text
    assert "import load_dict" not in text and "def get_env_vars" not in text and "env_vars" not in text
    assert report.sites_converted == 1


def test_a_bash_task_fed_secrets_through_a_second_task_is_reported(written: tuple[Path, MigrationReport]) -> None:
    folder, report = written
    (reason,) = left(report, "atd_bash_two_step.py")
    assert reason.startswith("'env_vars' (secrets from 1Password via XCom) is read by another task")
    assert "env=prepared" in (folder / "atd_bash_two_step.py").read_text()


def test_a_copied_opvault_the_old_helper_overwrote_is_reported(written: tuple[Path, MigrationReport]) -> None:
    _, report = written
    (finding,) = [f for f in report.left_for_you if "opvault" in f.reason]
    assert (finding.path, finding.line) == ("atd_local_load_dict.py", 25)
    assert (
        '"KNACK_APP_ID": \'opvault\': "DTS Dev" was replaced with OP_VAULT_ID by the old get_env_vars' in finding.reason
    )


def test_an_sdk_load_dict_task_honoured_opvault_already_so_nothing_is_reported() -> None:
    source = (
        "import onepasswordconnectsdk\nfrom airflow.decorators import task\n"
        "from airflow.providers.docker.operators.docker import DockerOperator\n"
        "S = {'A': {'opitem': 'x', 'opfield': 'y', 'opvault': 'Other'}}\n"
        "@task\ndef get_env_vars():\n    return onepasswordconnectsdk.load_dict(client, S)\n"
        "env = get_env_vars()\nt = DockerOperator(task_id='t', image='i', environment=env)\n"
    )
    result = migrate_source(source, "sdk.py")
    assert result.sites_converted == 1 and result.left_for_you == []


def test_a_dockeroperator_subclass_is_reported_not_replaced(written: tuple[Path, MigrationReport]) -> None:
    folder, report = written
    text = (folder / "atd_team_operator.py").read_text()
    assert 'TeamDockerOperator(task_id="tiles"' in text and "from utils.operators import" in text
    assert "SecretDockerOperator" not in text
    (reason,) = left(report, "atd_team_operator.py")
    assert "goes to TeamDockerOperator, a DockerOperator subclass" in reason
    (subclass,) = left(report, "utils/operators.py")
    assert subclass.startswith("class TeamDockerOperator extends DockerOperator")
    assert "utils/operators.py" not in report.unused_helpers


def test_names_a_shim_module_re_exports_stay(written: tuple[Path, MigrationReport]) -> None:
    folder, _ = written
    shim = (folder / "utils" / "operators.py").read_text()
    assert "from airflow.providers.standard.operators.bash import BashOperator" in shim
    assert "from airflow.providers.docker.operators.docker import DockerOperator" in shim


def test_a_latin1_file_is_migrated_and_written_in_its_own_encoding(written: tuple[Path, MigrationReport]) -> None:
    folder, _ = written
    raw = (folder / "atd_latin1.py").read_bytes()
    assert b"\xe1" in raw and b"se\xf1al" in raw, "still Latin-1"
    assert "schedule=None" in raw.decode("latin-1")


def test_a_symlink_is_reported_and_nothing_outside_the_folder_is_written(
    written: tuple[Path, MigrationReport], tmp_path: Path
) -> None:
    folder, report = written
    target = tmp_path / OUTSIDE.name / "atd_linked_target.py"
    assert target.read_text() == (OUTSIDE / "atd_linked_target.py").read_text()
    assert (folder / "atd_linked.py").is_symlink()
    (reason,) = left(report, "atd_linked.py")
    assert reason.startswith("a symlink (to ../airflow2_shapes_outside/atd_linked_target.py): left unchanged")


def test_one_unreadable_file_is_reported_and_the_rest_migrated(tmp_path: Path) -> None:
    shutil.copytree(CORPUS, tmp_path / "dags", symlinks=True)
    (tmp_path / "dags" / "atd_bad_bytes.py").write_bytes(b"x = '\xff\xfe'\n")  # declares nothing: UTF-8
    report = migrate_folder(tmp_path / "dags", resolve_target(tmp_path / "dags")[1])
    (reason,) = left(report, "atd_bad_bytes.py")
    assert reason.startswith("cannot be read as Python source text") and reason.endswith("left unchanged")
    assert report.sites_converted == 1


def test_the_report_names_each_behaviour_change(written: tuple[Path, MigrationReport]) -> None:
    _, report = written
    notes = "\n".join(report.behaviour_changes())
    assert "1 converted Docker task(s) have force_pull=True: a failed pull now fails the task" in notes
    assert "pull_fallback=True" in notes
    assert "the old helpers sent from every environment" in notes
    assert "AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS='*'" in notes
    assert "'airflow dags test <dag_id> --use-executor'" in notes and "without masking" in notes


def test_unused_dagrun_and_taskinstance_imports_go_from_their_own_modules() -> None:
    source = (
        "from airflow.models.dagrun import DagRun\nfrom airflow.models.taskinstance import TaskInstance\n"
        "from airflow.models import DAG\nd = DAG('x', schedule_interval=None)\n"
    )
    migrated = migrate_source(source, "models.py").migrated
    assert "DagRun" not in migrated and "TaskInstance" not in migrated and "schedule=None" in migrated


def test_a_second_run_changes_nothing(written: tuple[Path, MigrationReport]) -> None:
    folder, _ = written
    again = migrate_folder(folder, resolve_target(folder)[1])
    assert again.changed_files == [] and again.sites_converted == 0


def twelve_task_file() -> str:
    """One DAG with 12 Docker tasks fed by the secrets task, in the team's layout (over 200 lines)."""
    arguments = [
        'image="atddocker/atd-step:production"', "auto_remove=True", 'command="./step.py"', "environment=env_vars",
        "tty=True", "force_pull=True", 'docker_url="tcp://localhost:2376"', 'network_mode="bridge"',
        "mount_tmp_dir=False", "retries=2", "do_xcom_push=False", "cpus=1.0", 'mem_limit="2g"',
    ]  # fmt: skip
    tasks = "".join(
        f'\n    # step {n}\n    step_{n} = DockerOperator(\n        task_id="step_{n}",\n'
        + "".join(f"        {argument},\n" for argument in arguments)
        + "    )\n"
        for n in range(12)
    )
    return (
        "from datetime import datetime\n\nfrom airflow.models import DAG\n"
        "from airflow.operators.docker_operator import DockerOperator\n\n"
        "from utils.onepassword import get_env_vars_task\n\n"
        'REQUIRED_SECRETS = {"A": {"opitem": "x", "opfield": "y"}}\n\n'
        'with DAG(dag_id="twelve", start_date=datetime(2023, 1, 1), schedule_interval=None) as dag:\n'
        "    env_vars = get_env_vars_task(REQUIRED_SECRETS)\n"
        + tasks
        + "\n    "
        + " >> ".join(f"step_{n}" for n in range(12))
        + "\n"
    )


def test_the_dry_run_diff_is_as_short_as_gnu_diffs(tmp_path: Path) -> None:
    """difflib's autojunk showed unchanged lines (blank, ``)``) as removed and re-added in long files:
    on this file 394 diff lines where GNU diff needs 202 (measured)."""
    import subprocess

    source = twelve_task_file()
    result = migrate_source(source, "twelve.py")
    assert result.sites_converted == 12
    assert result.migrated.count("\n") >= 200, "difflib's autojunk starts at 200 lines"
    (tmp_path / "a.py").write_text(result.original)
    (tmp_path / "b.py").write_text(result.migrated)
    gnu = subprocess.run(["diff", "-u", "a.py", "b.py"], cwd=tmp_path, capture_output=True, text=True).stdout

    def changed(diff: str) -> int:
        return sum(1 for line in diff.splitlines()[2:] if line[:1] in "+-")

    ours = result.diff()
    assert changed(ours) == changed(gnu), (changed(ours), changed(gnu))
    assert len(ours.splitlines()) <= len(gnu.splitlines())
