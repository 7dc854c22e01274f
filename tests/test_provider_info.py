"""The provider where Airflow users look for it: provider info (validated by Airflow's schema), the
`airflow providers ...` and `airflow config ...` commands, the connection form, the plugin, the wheel."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_dts_provider
from airflow_dts_provider.get_provider_info import get_provider_info
from tests.conftest import REPO, airflow_base_env, run_airflow


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
    assert len(ours) == 1 and ours[0]["version"] == airflow_dts_provider.__version__
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


# ------------------------------------------------------------------------------------- where Airflow lists things
def test_airflow_providers_secrets_lists_the_backend(cli_env: dict[str, str]) -> None:
    result = run_airflow(["providers", "secrets", "--output", "json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    names = [row["secrets_backend_class_name"] for row in cli_json(result.stdout)]
    assert "airflow_dts_provider.secrets.onepassword.OnePasswordBackend" in names


def test_airflow_providers_notifications_lists_the_notifier(cli_env: dict[str, str]) -> None:
    result = run_airflow(["providers", "notifications", "--output", "json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    names = [row["notification_class_name"] for row in cli_json(result.stdout)]
    assert "airflow_dts_provider.notifications.slack.SlackNotifier" in names


def test_airflow_config_knows_the_dts_options(cli_env: dict[str, str]) -> None:
    listed = run_airflow(["config", "list", "--section", "dts", "--include-descriptions", "--show-values"], cli_env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "[dts]" in listed.stdout
    for name, option in get_provider_info()["config"]["dts"]["options"].items():
        assert f"{name} = {option['default']}" in listed.stdout, (name, listed.stdout[-2000:])
    assert "Comma-separated ``ENVIRONMENT`` values" in listed.stdout, "descriptions are shown"
    default = run_airflow(["config", "get-value", "dts", "slack_alert_environments"], cli_env)
    assert default.stdout.strip().splitlines()[-1] == "production"
    env = {**cli_env, "AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS": "production,staging"}
    overridden = run_airflow(["config", "get-value", "dts", "slack_alert_environments"], env)
    assert overridden.stdout.strip().splitlines()[-1] == "production,staging"


def test_airflow_providers_get_full_shows_every_part(cli_env: dict[str, str]) -> None:
    result = run_airflow(["providers", "get", "airflow-dts-provider", "--full", "--output", "json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = cli_json(result.stdout)[0]
    info = shown.get("provider_info", shown)
    assert info["secrets-backends"] == ["airflow_dts_provider.secrets.onepassword.OnePasswordBackend"]
    assert info["notifications"] == ["airflow_dts_provider.notifications.slack.SlackNotifier"]
    assert set(info["config"]["dts"]["options"]) == {
        "repo_url_template",
        "slack_alert_environments",
        "task_environment_keeps_connect_token",
    }
    assert info["connection-types"][0]["connection-type"] == "onepassword"


# ------------------------------------------------------------------------------------- [dts] options in the code
def dts_option_reads(root: Path) -> list[tuple[Path, str, ast.expr | None]]:
    """Every ``conf.get*("dts", "<option>", fallback=...)`` under root: (file, option, fallback)."""
    found: list[tuple[Path, str, ast.expr | None]] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not node.func.attr.startswith("get") or len(node.args) < 2:
                continue
            section, option = node.args[0], node.args[1]
            if isinstance(section, ast.Constant) and section.value == "dts":
                assert isinstance(option, ast.Constant), f"{path}: [dts] option name must be a literal"
                fallback = next((k.value for k in node.keywords if k.arg == "fallback"), None)
                found.append((path, str(option.value), fallback))
    return found


def test_every_dts_option_the_code_reads_is_declared_with_the_same_default() -> None:
    declared = get_provider_info()["config"]["dts"]["options"]
    reads = dts_option_reads(REPO / "airflow_dts_provider")
    assert {option for _, option, _ in reads} == set(declared), "declared options and the ones read must match"
    for path, option, fallback in reads:
        assert fallback is not None, f"{path}: conf.get('dts', {option!r}) needs fallback= (the declared default)"
        # evaluate the fallback in the module where it is written (it may name a constant)
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
        value = eval(compile(ast.Expression(fallback), str(path), "eval"), vars(module))
        assert value == declared[option]["default"], (path, option, value)


def test_the_option_scan_finds_an_undeclared_option(tmp_path: Path) -> None:
    """The check above can fail: an option read but not declared is found."""
    (tmp_path / "module.py").write_text(
        'from airflow.configuration import conf\nconf.get("dts", "nope", fallback="x")\n'
    )
    ((_, option, fallback),) = dts_option_reads(tmp_path)
    assert option == "nope" and isinstance(fallback, ast.Constant) and fallback.value == "x"
    assert option not in get_provider_info()["config"]["dts"]["options"]


# ------------------------------------------------------------------------------------- the wheel
def test_wheel_ships_py_typed_and_takes_its_version_from_the_package(tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")  # scripts/bootstrap installs it; builds with pyproject's backend
    command = [str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(REPO)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith(f"airflow_dts_provider-{airflow_dts_provider.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        assert "airflow_dts_provider/py.typed" in archive.namelist()


def test_changelog_has_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"\n## {airflow_dts_provider.__version__}" in changelog
