"""docker/: the compose files as Docker Compose v2 itself reads them, merged, with profiles.

No Docker engine runs here, but `docker compose config` needs none: it parses, validates against
the compose spec, interpolates and merges exactly as `up` would (scripts/bootstrap installs the
pinned compose binary into .venv/bin).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_FERNET_KEY, REPO, TEST_FERNET_KEY, free_port, require, require_binary, wait_for_port

DOCKER_DIR = REPO / "docker"
BASE = "docker-compose.yaml"
PRODUCTION = "docker-compose-production.yaml"
BACKEND = "airflow_dts_provider.secrets.onepassword.OnePasswordBackend"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
    "flower",
}
DEFAULT_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "haproxy"}
PROFILES = {"cli": {"airflow-cli"}, "dev-vault": {"dev-vault"}, "remote-worker": {"airflow-remote-worker"}}
TASK_RUNNERS = {"airflow-worker", "airflow-cli", "airflow-remote-worker"}

# What a production docker/.env holds (the hash contains '$' and is single-quoted, as documented).
FLOWER_HASH = "$6$saltsalt$Wv1Y2b0R0mJm7xQ2bY3pQw"
PRODUCTION_ENV = {
    "_AIRFLOW__CORE__FERNET_KEY": TEST_FERNET_KEY,
    "_AIRFLOW__WEBSERVER__BASE_URL": "https://airflow.example.org",
    "_AIRFLOW_WWW_USER_USERNAME": "admin",
    "_AIRFLOW_WWW_USER_PASSWORD": "a-long-real-password",
    "AIRFLOW_JWT_SECRET": "jwt-secret-for-tests",
    "AIRFLOW_API_SECRET_KEY": "api-secret-for-tests",
    "OP_CONNECT": "https://connect.example.org",
    "OP_API_TOKEN": "token-for-tests",
    "OP_VAULT_ID": "vault123",
    "POSTGRES_PASSWORD": "pg-password-for-tests",
    "REDIS_PASSWORD": "redis-password-for-tests",
    "AIRFLOW_HOST": "airflow.example.org",
    "FLOWER_HOST": "flower.example.org",
    "FLOWER_PASSWORD_HASH": FLOWER_HASH,
}


def compose_binary() -> Path:
    binary = Path(sys.executable).with_name("docker-compose")
    require(binary.exists(), "docker-compose is not installed in the venv (scripts/bootstrap, x86_64 only)")
    return binary


def compose(
    tmp_path: Path, env: dict[str, str], *args: str, files: tuple[str, ...] = (BASE,), check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `docker compose` in docker/ with exactly `env` as its .env file and nothing inherited."""
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    command = [str(compose_binary()), "--env-file", str(env_file)]
    for name in files:
        command += ["-f", name]
    result = subprocess.run(
        [*command, *args],
        cwd=DOCKER_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / ".docker")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def config(tmp_path: Path, env: dict[str, str], *, files: tuple[str, ...] = (BASE,), profile: str = "") -> Any:
    profile_args = ["--profile", profile] if profile else []
    return json.loads(compose(tmp_path, env, *profile_args, "config", "--format", "json", files=files).stdout)


def services(tmp_path: Path, *, profile: str = "") -> set[str]:
    profile_args = ["--profile", profile] if profile else []
    return set(compose(tmp_path, {}, *profile_args, "config", "--services").stdout.split())


def test_default_services_and_each_profile(tmp_path: Path) -> None:
    assert services(tmp_path) == DEFAULT_SERVICES
    for profile, extra in PROFILES.items():
        assert services(tmp_path, profile=profile) == DEFAULT_SERVICES | extra, profile


def test_readme_services_table_matches_the_compose_file(tmp_path: Path) -> None:
    """README's table of services is the documentation: every row exists, with the profile it names."""
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| (?:profile `([a-z-]+)`|always) \|", readme, flags=re.MULTILINE)
    documented = {name: profile or "" for name, profile in rows}
    assert documented, "README has no services table"
    everything = services(tmp_path, profile="*")
    assert set(documented) == everything
    for name, profile in documented.items():
        expected = DEFAULT_SERVICES if not profile else DEFAULT_SERVICES | PROFILES[profile]
        assert name in expected, f"README says {name} is in {profile or 'the default set'}"


def test_env_example_lists_every_variable_the_compose_files_read() -> None:
    used: set[str] = set()
    for name in (BASE, PRODUCTION):
        text = (DOCKER_DIR / name).read_text()
        used |= set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    example = (DOCKER_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s?([A-Za-z_][A-Za-z0-9_]*)=", example, flags=re.MULTILINE))
    assert used - listed == set()
    # the team's names are the ones kept
    assert {"OP_CONNECT", "OP_API_TOKEN", "OP_VAULT_ID", "_AIRFLOW_WWW_USER_USERNAME"} <= listed


def test_every_airflow_service_gets_the_secrets_backend_for_both_sections(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"OP_VAULT_ID": "my vault"}, profile="*")
    for name in AIRFLOW_SERVICES | {"airflow-cli", "airflow-remote-worker"}:
        env = cfg["services"][name]["environment"]
        assert env["AIRFLOW__SECRETS__BACKEND"] == BACKEND, name
        assert env["AIRFLOW__WORKERS__SECRETS_BACKEND"] == BACKEND, name
        for key in ("AIRFLOW__SECRETS__BACKEND_KWARGS", "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"):
            assert json.loads(env[key]) == {"vault": "my vault"}, (name, key)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        # task output mirrored to the console would bypass run-time masks (README, Deploying)
        assert env["AIRFLOW__LOGGING__TASK_LOGS_TO_STDOUT"] == "false"
        assert env["AIRFLOW__CELERY__TASK_LOGS_TO_STDOUT"] == "false"
        assert env["OP_CONNECT"] == "http://dev-vault:8089"  # the offline default
        mounts = {v["target"] for v in cfg["services"][name].get("volumes", [])}
        assert "/opt/airflow/dags" in mounts, name
        # only what runs tasks gets the Docker socket (it is root on the host)
        assert ("/var/run/docker.sock" in mounts) == (name in TASK_RUNNERS), name
        assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"


def test_long_running_services_have_healthchecks_and_wait_for_init(tmp_path: Path) -> None:
    cfg = config(tmp_path, {}, profile="*")["services"]
    for name, service in cfg.items():
        if name in {"airflow-init", "airflow-cli", "haproxy"}:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/api/v2/monitor/health" in " ".join(cfg["airflow-apiserver"]["healthcheck"]["test"])
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert cfg[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert cfg[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert cfg[name]["depends_on"]["dev-vault"]["required"] is False
    # the remote worker runs on another host: it must not start a local Redis or Postgres
    assert not cfg["airflow-remote-worker"].get("depends_on")
    assert "main-db.internal" in json.dumps(
        config(tmp_path, {"AIRFLOW_MAIN_HOST": "main-db.internal"}, profile="remote-worker")["services"][
            "airflow-remote-worker"
        ]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    )


def published(cfg: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {
        name: sorted((p.get("host_ip", ""), p["published"]) for p in service.get("ports", []))
        for name, service in cfg["services"].items()
        if service.get("ports")
    }


def test_local_haproxy_is_the_only_published_entry_and_only_on_loopback(tmp_path: Path) -> None:
    assert published(config(tmp_path, {})) == {"haproxy": [("127.0.0.1", "8080"), ("127.0.0.1", "8081")]}
    remote = config(tmp_path, {}, profile="remote-worker")
    assert published(remote)["airflow-remote-worker"] == [("127.0.0.1", "8793")]
    # opened on purpose, to the address given
    chosen = {"LOCAL_BIND": "10.0.0.10", "REMOTE_WORKER_LOG_BIND": "10.0.0.11", "AIRFLOW_PORT": "9090"}
    opened = published(config(tmp_path, chosen, profile="remote-worker"))
    assert opened["haproxy"] == [("10.0.0.10", "8081"), ("10.0.0.10", "9090")]
    assert opened["airflow-remote-worker"] == [("10.0.0.11", "8793")]


def test_production_merge_replaces_ports_config_and_environment(tmp_path: Path) -> None:
    cfg = config(tmp_path, PRODUCTION_ENV, files=(BASE, PRODUCTION), profile="*")
    # 80/443 only; Redis/Postgres (for remote workers) on loopback unless REMOTE_WORKER_BIND says otherwise
    assert published(cfg) == {
        "haproxy": [("", "443"), ("", "80")],
        "postgres": [("127.0.0.1", "5432")],
        "redis": [("127.0.0.1", "6379")],
        "airflow-remote-worker": [("127.0.0.1", "8793")],
    }
    haproxy = cfg["services"]["haproxy"]
    assert str(haproxy["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) == "0"  # the image is not root
    mounts = {v["target"]: Path(v["source"]).relative_to(REPO).as_posix() for v in haproxy["volumes"]}
    assert mounts == {
        "/usr/local/etc/haproxy/haproxy.cfg": "haproxy/haproxy-production.cfg",
        "/usr/local/etc/haproxy/ssl": "haproxy/ssl",
    }
    # the hash reaches HAProxy verbatim: compose did not expand its '$' parts (`config` prints a
    # literal '$' as '$$', so that its output is a compose file again)
    assert haproxy["environment"]["FLOWER_PASSWORD_HASH"].replace("$$", "$") == FLOWER_HASH
    assert haproxy["environment"]["FLOWER_USER"] == "admin"
    for name in AIRFLOW_SERVICES | {"airflow-cli", "airflow-remote-worker"}:
        env = cfg["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "production", name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == PRODUCTION_ENV["_AIRFLOW__CORE__FERNET_KEY"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt-secret-for-tests", name
        assert env["OP_CONNECT"] == "https://connect.example.org", name
        assert json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {"vault": "vault123"}
        assert env["AIRFLOW__SECRETS__BACKEND"] == BACKEND  # kept from the base file
    assert cfg["services"]["redis"]["environment"]["REDIS_PASSWORD"] == "redis-password-for-tests"
    assert "redis-password-for-tests" in cfg["services"]["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    # the production environment leaves the remote worker pointed at the main host
    remote = cfg["services"]["airflow-remote-worker"]["environment"]
    assert "@main-host:6379/" in remote["AIRFLOW__CELERY__BROKER_URL"]
    assert "redis-password-for-tests" in remote["AIRFLOW__CELERY__BROKER_URL"]
    init_env = cfg["services"]["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_WWW_USER_PASSWORD"] == "a-long-real-password"


REQUIRED_IN_PRODUCTION = sorted(set(re.findall(r"\$\{(\w+):\?", (DOCKER_DIR / PRODUCTION).read_text())))


def test_readme_lists_exactly_the_variables_production_requires() -> None:
    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("refuses to start while any secret is missing") :]
    paragraph = paragraph[: paragraph.index("\n\n")]
    assert set(re.findall(r"`(\w+)`", paragraph)) == set(REQUIRED_IN_PRODUCTION)
    assert set(REQUIRED_IN_PRODUCTION) <= set(PRODUCTION_ENV)


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_refuses_to_start_without(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = compose(tmp_path, env, "config", "--quiet", files=(BASE, PRODUCTION), check=False)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    # the same settings are fine for a laptop: the defaults live in the base file only
    compose(tmp_path, env, "config", "--quiet")


def test_production_file_bakes_in_no_secret() -> None:
    text = (DOCKER_DIR / PRODUCTION).read_text()
    for variable in PRODUCTION_ENV:
        assert not re.search(rf"\$\{{{variable}:-", text), f"{variable} has a default in the production file"
    assert EXAMPLE_FERNET_KEY not in text


def test_image_pins_match_the_tested_environment() -> None:
    lock = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements" / "dev.lock").read_text(), flags=re.MULTILINE)
    )
    constraints = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (DOCKER_DIR / "constraints.txt").read_text(), flags=re.MULTILINE)
    )
    assert {"apache-airflow", "onepasswordconnectsdk", "apache-airflow-providers-docker"} <= set(constraints)
    for name, version in constraints.items():
        assert lock.get(name) == version, f"docker/constraints.txt pins {name}=={version}, dev.lock {lock.get(name)}"
    dockerfile = (DOCKER_DIR / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)[1] == lock["apache-airflow"]
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    compose_text = (DOCKER_DIR / BASE).read_text()
    assert f"AIRFLOW_VERSION: ${{AIRFLOW_VERSION:-{lock['apache-airflow']}}}" in compose_text


def test_dockerignore_lets_through_what_the_dockerfile_copies() -> None:
    dockerfile = (DOCKER_DIR / "Dockerfile").read_text()
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context should start from nothing"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for sources in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for source in sources.split():
            assert source in allowed, f"Dockerfile copies {source}, which .dockerignore excludes"
            assert (REPO / source).exists(), source
    # airflow-init runs the script from where the image puts it
    assert "/opt/dts/airflow-init.sh" in dockerfile
    assert '["/opt/dts/airflow-init.sh"]' in (DOCKER_DIR / BASE).read_text()


def test_redis_command_and_healthcheck_enforce_the_password(tmp_path: Path) -> None:
    """The redis service's shell command and healthcheck, run with Debian's Redis on a free port."""
    real_server, real_cli = require_binary("redis-server"), require_binary("redis-cli")
    redis = config(tmp_path, {})["services"]["redis"]
    command = [part.replace("$$", "$") for part in redis["command"]]
    kind, check = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    port = free_port()
    bin_dir = tmp_path / "bin"  # the container's redis binaries, pointed at a free port
    bin_dir.mkdir()
    (bin_dir / "redis-server").write_text(f'#!/bin/sh\nexec {real_server} "$@" --port {port} --save ""\n')
    (bin_dir / "redis-cli").write_text(f'#!/bin/sh\nexec {real_cli} -p {port} "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)

    def healthcheck(password: str) -> int:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": password}
        return subprocess.run(["sh", "-c", check.replace("$$", "$")], env=env, capture_output=True).returncode

    for password in ("s3cret-redis-pw", ""):
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": password}
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, server)
            anonymous = subprocess.run([real_cli, "-p", str(port), "ping"], capture_output=True, text=True).stdout
            if password:
                assert "NOAUTH" in anonymous
                assert healthcheck(password) == 0
                assert healthcheck("wrong-password") != 0
                # the password went in through stdin: it is not in the server's command line
                assert password not in Path(f"/proc/{server.pid}/cmdline").read_text()
            else:
                assert anonymous.strip() == "PONG"
                assert healthcheck("") == 0
        finally:
            server.terminate()
            server.wait(10)


NEWCOMER_CHECK = """
import json, os, runpy
import airflow  # first, as in every Airflow process: it loads the configured secrets backend
from airflow_dts_provider._onepassword import ConnectSettings, OnePasswordClient
from airflow_dts_provider.secrets.onepassword import OnePasswordBackend

backend = OnePasswordBackend(**json.loads(os.environ["AIRFLOW__SECRETS__BACKEND_KWARGS"]))
client = OnePasswordClient(ConnectSettings.from_env())
found = {
    "conn warehouse": backend.get_conn_value("warehouse") is not None,
    "var socrata_dataset_id": backend.get_variable("socrata_dataset_id") is not None,
    "var knack_api_key": backend.get_variable("knack_api_key") is not None,
}
for example in ("onepassword_hook_example", "secret_docker_example"):
    secrets = runpy.run_path(f"{os.environ['EXAMPLES']}/{example}.py")["REQUIRED_SECRETS"]
    found[example] = sorted(client.resolve_many(secrets)) == sorted(secrets)
print(json.dumps(found))
"""


def test_newcomer_defaults_serve_what_the_example_dags_read(tmp_path: Path) -> None:
    """`--profile dev-vault` with an empty .env: the Airflow containers' defaults reach the dev-vault
    service, whose default file holds every secret the example DAGs (the default DAGs folder) read."""
    cfg = config(tmp_path, {}, profile="dev-vault")["services"]
    dev_vault, worker = cfg["dev-vault"], cfg["airflow-worker"]
    assert next(v for v in worker["volumes"] if v["target"] == "/opt/airflow/dags")["source"] == str(
        REPO / "example_dags"
    )
    mount = next(v for v in dev_vault["volumes"] if v["target"] == "/opt/dts/vault.yaml")
    port = free_port()
    replace = {"8089": str(port), "/opt/dts/vault.yaml": mount["source"]}
    argv = [replace.get(arg, arg) for arg in [*dev_vault["entrypoint"], *dev_vault["command"]]]
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    server = subprocess.Popen(
        argv, env={**os.environ, **dev_vault["environment"]}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, server)
        env = {
            k: str(v).replace("http://dev-vault:8089", f"http://127.0.0.1:{port}")
            for k, v in worker["environment"].items()
        }
        env |= {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "EXAMPLES": str(REPO / "example_dags")}
        env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
        env.pop("AIRFLOW_CONFIG")
        result = subprocess.run(
            [sys.executable, "-c", NEWCOMER_CHECK], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-3000:]
        found = json.loads(result.stdout.strip().splitlines()[-1])
        assert all(found.values()), found
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    ("settings", "dags"),
    [
        ({}, str(REPO / "example_dags")),
        ({"AIRFLOW_PROJ_DIR": "/srv/atd-airflow"}, "/srv/atd-airflow/dags"),  # the Airflow 2 stack's .env
        ({"AIRFLOW_PROJ_DIR": "/srv/atd-airflow", "AIRFLOW_DAGS_DIR": "/srv/dags"}, "/srv/dags"),
    ],
)
def test_the_dags_folder_follows_the_settings(settings: dict[str, str], dags: str, tmp_path: Path) -> None:
    services = config(tmp_path, settings)["services"]
    for name in AIRFLOW_SERVICES:
        mounts = {v["target"]: v["source"] for v in services[name]["volumes"]}
        assert mounts["/opt/airflow/dags"] == dags, name
