"""SecretDockerOperator on a real Docker-API engine (Podman from Debian, local busybox image)."""

from __future__ import annotations

import collections
import hashlib
import http.server
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from airflow_dts_provider._onepassword import InvalidReferenceError
from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.hooks.onepassword import OnePasswordHook
from airflow_dts_provider.operators.docker import SecretDockerOperator, describe, is_transient, scrub
from airflow_dts_provider.operators.exceptions import DockerEngineUnreachableError, ImagePullError
from tests.conftest import CANARY, TOKEN, AirflowStack, digests_in_log, logged_messages
from tests.image_registry import MARKER, ImageRegistry

IMAGE = "localhost/dts-busybox:latest"
SECRETS = {"APP_ID": {"opitem": "Knack", "opfield": "prod.appId"}, "TOKEN": "op://Docker Vault/Socrata/appToken"}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- parse-time validation (no network) -----------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "kwargs", "message"),
    [
        ({"KNACK_APP_ID": {"opitem": "Knack", "opfeild": "prod.appId"}}, {}, r"^KNACK_APP_ID: unknown key"),
        ({"KNACK_APP_ID": {"opitem": "Knack", "opfield": ""}}, {}, r"^KNACK_APP_ID: 'opfield' is required"),
        ({"KNACK_APP_ID": {"opitem": "Knack", "opfield": "prod."}}, {},
         r"^KNACK_APP_ID: 'opfield' 'prod\.' names no field"),
        ({"TOKEN": "op://Vault/Item"}, {}, r"^TOKEN: 'op://Vault/Item' must have the form"),
        ({"TOKEN": "vault/item/field"}, {}, r"^TOKEN: .* is not a 1Password reference"),
        ({"1TOKEN": "op://v/i/f"}, {}, "not a valid environment variable name"),
        ({"TOKEN": "op://v/i/f"}, {"environment": {"TOKEN": "x"}}, "TOKEN is set in both environment and secrets"),
        ({"TOKEN": "op://v/i/f"}, {"private_environment": {"TOKEN": "x"}}, "TOKEN is set in both private_environment"),
    ],
)  # fmt: skip
def test_bad_secrets_fail_at_construction(secrets: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        SecretDockerOperator(task_id="t", image=IMAGE, secrets=secrets, **kwargs)


@pytest.fixture
def onepassword_conn(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "onepassword", "host": devvault.url, "password": TOKEN, "extra": {"vault": "Docker Vault"}}
    monkeypatch.setenv("AIRFLOW_CONN_ONEPASSWORD_DEFAULT", json.dumps(conn))


def test_construction_makes_no_network_call(devvault: DevVaultServer, onepassword_conn: None) -> None:
    op = SecretDockerOperator(task_id="t", image=IMAGE, secrets=SECRETS)  # the connection points at the dev vault
    assert set(op.secrets) == {"APP_ID", "TOKEN"}
    assert devvault.request_count == 0
    assert "secrets" not in op.template_fields and "private_environment" not in op.template_fields
    OnePasswordHook().get_conn().clear_cache()  # the process-wide client may hold these items from other tests
    assert set(op._resolve_secrets()) == {"APP_ID", "TOKEN"}
    assert devvault.request_count > 0, "the same operator does reach the vault when it runs"


@pytest.mark.parametrize(
    ("text", "transient"),
    [
        ('pinging container registry 127.0.0.1:15503: dial tcp 127.0.0.1:15503: connect: connection refused', True),
        ("pinging registry 127.0.0.1:15500: invalid status code from registry 500 (Internal Server Error)", True),
        ("reading manifest latest in 127.0.0.1:15501/team/app: unauthorized: authentication required", False),
        ("invalid status code from registry 404 (Not Found)", False),
        ("manifest unknown: manifest unknown", False),
        ("lookup registry.example: no such host", True),
        ("net/http: TLS handshake timeout", True),
        ("requested access to the resource is denied", False),
    ],
)  # fmt: skip
def test_registry_error_classification(text: str, transient: bool) -> None:
    assert is_transient(text) is transient


def test_no_engine_fails_with_what_to_start(tmp_path: Path) -> None:
    nowhere = f"unix://{tmp_path}/docker.sock"  # no engine listens here
    op = SecretDockerOperator(task_id="t", image=IMAGE, docker_url=nowhere, mount_tmp_dir=False)
    with pytest.raises(DockerEngineUnreachableError) as err:
        op.execute({})
    assert f"No Docker engine answers at {nowhere}" in str(err.value)
    assert "scripts/dev starts Podman's Docker API" in str(err.value)


def test_no_engine_still_drops_the_resolved_values(tmp_path: Path, onepassword_conn: None) -> None:
    """Secrets are resolved first; whatever fails after, the operator keeps none of them."""
    op = SecretDockerOperator(task_id="t", image=IMAGE, docker_url=f"unix://{tmp_path}/docker.sock",
                              mount_tmp_dir=False, secrets=SECRETS, private_environment={"PLAIN": "kept"})  # fmt: skip
    with pytest.raises(DockerEngineUnreachableError):
        op.execute({})
    assert op._private_environment == {"PLAIN": "kept"}


@pytest.mark.parametrize(
    ("kwargs", "auto_remove"),
    [({"secrets": SECRETS}, "force"), ({}, "never"), ({"secrets": SECRETS, "auto_remove": "never"}, "never")],
)
def test_containers_with_secrets_are_removed_by_default(kwargs: dict, auto_remove: str) -> None:
    assert SecretDockerOperator(task_id="t", image=IMAGE, **kwargs).auto_remove == auto_remove


@pytest.mark.parametrize(
    ("auto_remove", "warning"),
    [
        ("force", None),
        ("never", "auto_remove='never': the container is kept and holds the secrets APP_ID, TOKEN in its environment"),
        (
            "success",
            "auto_remove='success': a container stopped by a kill is kept and holds the secrets APP_ID, TOKEN "
            "in its environment",
        ),
    ],
)
def test_resolving_logs_names_never_values(
    onepassword_conn: None, capfd: pytest.CaptureFixture, auto_remove: str, warning: str | None
) -> None:
    op = SecretDockerOperator(task_id="t", image=IMAGE, secrets=SECRETS, auto_remove=auto_remove)
    assert op._resolve_secrets() == {"APP_ID": "docker-knack-prod-app", "TOKEN": "docker-socrata-token"}
    logged = capfd.readouterr().out
    messages = logged_messages(logged)
    assert messages[0] == "Resolving 2 secret(s) from 1Password for: APP_ID, TOKEN"
    warnings = [line for line in logged.splitlines() if "warning" in line.lower()]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert messages[1] == (
            f"{warning} (docker inspect shows them); remove it when done, or drop auto_remove to have it always removed"
        )
    assert "docker-socrata-token" not in logged and "docker-knack-prod-app" not in logged


def test_the_operators_connection_and_vault_are_used(devvault: DevVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A named onepassword connection, and a default vault for entries without opvault that overrides its own."""
    conn = {"conn_type": "onepassword", "host": devvault.url, "password": TOKEN, "extra": {"vault": "Airflow Vault"}}
    monkeypatch.setenv("AIRFLOW_CONN_OP_TEAM", json.dumps(conn))
    monkeypatch.delenv("AIRFLOW_CONN_ONEPASSWORD_DEFAULT", raising=False)
    op = SecretDockerOperator(task_id="t", image=IMAGE, secrets=SECRETS, onepassword_conn_id="op_team",
                              onepassword_vault="Docker Vault")  # fmt: skip
    assert op._resolve_secrets() == {"APP_ID": "docker-knack-prod-app", "TOKEN": "docker-socrata-token"}


def test_secrets_that_are_not_a_mapping_or_a_name_say_so() -> None:
    with pytest.raises(InvalidReferenceError) as err:
        SecretDockerOperator(task_id="t", image=IMAGE, secrets=["TOKEN"])  # type: ignore[arg-type]
    assert str(err.value) == "secrets must be a dict of ENV_NAME -> reference, got list"
    with pytest.raises(InvalidReferenceError) as err:
        SecretDockerOperator(task_id="t", image=IMAGE, secrets={"1TOKEN": "op://v/i/f"})
    assert str(err.value) == (
        "secrets key '1TOKEN' is not a valid environment variable name (letters, digits, _; not a digit first)"
    )


def test_no_secrets_no_1password(devvault: DevVaultServer, capfd: pytest.CaptureFixture) -> None:
    assert SecretDockerOperator(task_id="t", image=IMAGE)._resolve_secrets() == {}
    assert devvault.request_count == 0 and "Resolving" not in capfd.readouterr().out


@pytest.mark.parametrize(
    ("result", "scrubbed"),
    [
        ("token=docker-socrata-token", "token=***"),
        (b"token=docker-socrata-token", "token=***"),  # the engine's raw bytes, decoded
        (["a docker-socrata-token", "line two", "first-line"], ["a ***", "line two", "***"]),
        (b"\xff token=docker-socrata-token", "\ufffd token=***"),  # not UTF-8: decoded with replacement
        ("id=abc", "id=abc"),  # below Airflow's 5-character masking threshold: left, as logs leave it
        (None, None),
        (3, 3),
        # retrieve_output=True returns whatever the container pickled: every container is walked, keys too
        (
            {"token": "docker-socrata-token", "docker-socrata-token": 1, "n": [("x", b"first-line")]},
            {"token": "***", "***": 1, "n": [("x", "***")]},
        ),
        (("docker-socrata-token", {"a": ("second-line",)}), ("***", {"a": ("***",)})),
        ({"second-line", "kept"}, {"***", "kept"}),
    ],
)
def test_what_becomes_xcom_has_every_value_scrubbed(result: object, scrubbed: object) -> None:
    values = ["docker-socrata-token", "first-line\nsecond-line", "", "abc"]
    assert scrub(result, values) == scrubbed


def test_a_tuple_subclass_from_retrieve_output_comes_back_a_plain_tuple_scrubbed() -> None:
    Row = collections.namedtuple("Row", ["token", "port"])  # its constructor takes fields, not an iterable
    scrubbed = scrub(Row("docker-socrata-token", 80), ["docker-socrata-token"])
    assert type(scrubbed) is tuple and scrubbed == ("***", 80)


def test_no_values_leave_the_result_untouched() -> None:
    assert scrub(b"raw bytes", []) == b"raw bytes"
    assert scrub(b"raw bytes", [""]) == b"raw bytes"


def test_registry_errors_are_described_by_the_engines_explanation() -> None:
    from docker.errors import APIError

    assert describe(APIError("500 Server Error", explanation="manifest unknown")) == "manifest unknown"
    assert describe(APIError("500 Server Error")) == "500 Server Error"
    assert describe(RuntimeError("plain")) == "plain"
    assert is_transient(APIError("500", explanation="dial tcp: connection refused")) is True
    assert is_transient(APIError("500", explanation="connection refused; then 401 unauthorized")) is False


# -- execute against the engine: secrets, XCom scrubbing, pull fallback ---------------------


def make_op(docker_url: str, **kwargs: object) -> SecretDockerOperator:
    values: dict[str, object] = {
        "task_id": "t", "image": IMAGE, "docker_url": docker_url, "mount_tmp_dir": False, "auto_remove": "success",
        "secrets": SECRETS,
        "command": ["sh", "-c", 'printf %s "$APP_ID" | sha256sum | cut -c1-64; echo "token=$TOKEN"'],
    }  # fmt: skip
    values.update(kwargs)
    return SecretDockerOperator(**values)  # type: ignore[arg-type]


def test_secrets_reach_the_container_and_not_xcom(docker_url: str, onepassword_conn: None) -> None:
    op = make_op(docker_url, xcom_all=True)
    lines = op.execute({})
    assert lines == [sha("docker-knack-prod-app"), "token=***"], "values arrive; the XCom copy is scrubbed"
    assert op._private_environment == {}, "resolved values are dropped after the run"


def test_container_failure_still_drops_values(docker_url: str, onepassword_conn: None) -> None:
    op = make_op(docker_url, command=["sh", "-c", "exit 3"], auto_remove="force")
    with pytest.raises(Exception, match="Docker container failed"):
        op.execute({})
    assert op._private_environment == {}


class FakeRegistry(http.server.ThreadingHTTPServer):
    """Answers every registry request with one status (a local stand-in: no registry is reachable here).

    The ports are fixed (Podman's registries.conf marks them plain HTTP); ``SO_REUSEPORT`` lets two test
    processes (``scripts/mutate`` runs two) serve the same port, each giving the same answer.
    """

    allow_reuse_port = True

    def __init__(self, port: int, status: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="fake"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def registries() -> Iterator[dict[str, str]]:
    """127.0.0.1:15500 answers 500, :15501 401, :15502 404; :15503 refuses connections."""
    servers = [FakeRegistry(15500, 500), FakeRegistry(15501, 401), FakeRegistry(15502, 404)]
    yield {"500": "127.0.0.1:15500", "401": "127.0.0.1:15501", "404": "127.0.0.1:15502", "refused": "127.0.0.1:15503"}
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def local_copy(docker_url: str) -> Iterator[callable]:  # type: ignore[valid-type]
    """Tag the local busybox image under a registry name, as if it had been pulled before.

    The name is made unique so that test processes running side by side never remove each other's tag.
    """
    client = docker.APIClient(base_url=docker_url)
    tagged: list[str] = []

    def tag(repository: str) -> str:
        repository = f"{repository}-{uuid.uuid4().hex[:8]}"
        client.tag(IMAGE, repository, "latest")
        tagged.append(f"{repository}:latest")
        return f"{repository}:latest"

    yield tag
    for name in tagged:
        client.remove_image(name, force=True)


def pulls_logged(messages: list[str], image: str) -> int:
    """Pulls of ``image`` the operator logged: ours, and DockerOperator's own (``::group::Pulling ...``)."""
    return sum(m.endswith(f"Pulling docker image {image}") for m in messages)


@pytest.mark.parametrize("registry", ["refused", "500"])
def test_transient_pull_failure_runs_the_local_copy(
    docker_url: str, onepassword_conn: None, registries: dict, local_copy, registry: str, capfd: pytest.CaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    image = local_copy(f"{registries[registry]}/team/app")
    op = make_op(docker_url, image=image, force_pull=True, pull_fallback=True)
    assert op.execute({}) == "token=***"
    messages = logged_messages(capfd.readouterr().out)
    assert pulls_logged(messages, image) == 1, "DockerOperator must not pull a second time"
    (fallback,) = [m for m in messages if "running the local copy" in m]
    found = re.fullmatch(rf"Pulling {re.escape(image)} failed \((.*)\); running the local copy \(pull_fallback=True\)",
                         fallback)  # fmt: skip
    assert found, fallback
    assert re.search(r"connection refused|\b500\b", found[1]), f"the engine's explanation is the cause: {found[1]}"
    assert op.force_pull is True, "the operator's own setting is back after the run"


@pytest.mark.parametrize("registry", ["refused", "500"])
def test_transient_pull_failure_without_fallback_fails(
    docker_url: str, onepassword_conn: None, registries: dict, local_copy, registry: str
) -> None:  # type: ignore[no-untyped-def]
    image = local_copy(f"{registries[registry]}/team/app")
    op = make_op(docker_url, image=image, force_pull=True)
    with pytest.raises(ImagePullError, match="transient error") as err:
        op.execute({})
    assert err.value.transient


@pytest.mark.parametrize(("registry", "cause"), [("401", "unauthorized"), ("404", "404")])
def test_permanent_pull_failure_fails_even_with_fallback(
    docker_url: str, onepassword_conn: None, registries: dict, local_copy, registry: str, cause: str
) -> None:  # type: ignore[no-untyped-def]
    image = local_copy(f"{registries[registry]}/team/app")
    op = make_op(docker_url, image=image, force_pull=True, pull_fallback=True)
    with pytest.raises(ImagePullError, match=f"permanent error.*{cause}") as err:
        op.execute({})
    assert not err.value.transient


def test_transient_failure_without_local_copy_says_so(
    docker_url: str, onepassword_conn: None, registries: dict
) -> None:
    image = f"{registries['refused']}/team/never-pulled:latest"
    op = make_op(docker_url, image=image, pull_fallback=True)
    with pytest.raises(ImagePullError) as err:
        op.execute({})
    assert str(err.value).startswith(
        f"Pulling {image!r} failed (transient error) and there is no local copy to fall back to: "
    )
    assert "connection refused" in str(err.value) and err.value.transient is True


def test_a_malformed_image_name_is_a_permanent_error_with_the_engines_words(
    docker_url: str, onepassword_conn: None
) -> None:
    image = "127.0.0.1:15504/Team/App:latest"
    op = make_op(docker_url, image=image, force_pull=True, pull_fallback=True)
    with pytest.raises(ImagePullError) as err:
        op.execute({})
    assert str(err.value) == (
        f"Pulling {image!r} failed (permanent error): "
        "normalizing image: normalizing name for compat API: repository name must be lowercase"
    )
    assert err.value.transient is False and op._private_environment == {}


@pytest.fixture(scope="module")
def image_registry() -> Iterator[str]:
    """A registry stand-in on 127.0.0.1:15504 serving busybox with a marker file under any name."""
    registry = ImageRegistry(15504)
    yield "127.0.0.1:15504"
    registry.stop()


@pytest.fixture
def pulled_images(docker_url: str) -> Iterator[list[str]]:
    """Images a test pulls, removed after it."""
    images: list[str] = []
    yield images
    client = docker.APIClient(base_url=docker_url)
    for image in images:
        if client.images(name=image):
            client.remove_image(image, force=True)


@pytest.mark.parametrize("force_pull", [True, False])
def test_an_image_not_here_or_forced_is_pulled_once_and_run(
    docker_url: str,
    onepassword_conn: None,
    image_registry: str,
    pulled_images: list[str],
    capfd: pytest.CaptureFixture,
    force_pull: bool,
) -> None:
    image = f"{image_registry}/team/fresh-{uuid.uuid4().hex[:8]}:latest"
    pulled_images.append(image)
    op = make_op(docker_url, image=image, force_pull=force_pull, xcom_all=True,
                 command=["sh", "-c", 'cat /etc/dts-pulled; echo "token=$TOKEN"'])  # fmt: skip
    assert op.execute({}) == [MARKER, "token=***"], "the container ran the image the registry served"
    messages = logged_messages(capfd.readouterr().out)
    assert pulls_logged(messages, image) == 1, "pulled once: DockerOperator does not pull again"
    assert not [m for m in messages if "Pulling fs layer" in m or "Download complete" in m], (
        "per-layer progress is not logged"
    )
    assert op.force_pull is force_pull


def test_an_image_already_here_is_not_pulled(
    docker_url: str, onepassword_conn: None, image_registry: str, local_copy, capfd: pytest.CaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    image = local_copy(f"{image_registry}/team/app")
    assert make_op(docker_url, image=image).execute({}) == "token=***"
    assert not [m for m in logged_messages(capfd.readouterr().out) if m.startswith("Pulling")]


def test_registry_login_failure_falls_back(
    docker_url: str,
    onepassword_conn: None,
    registries: dict,
    local_copy,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
) -> None:  # type: ignore[no-untyped-def]
    registry = registries["refused"]
    host, port = registry.split(":")
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_REGISTRY", json.dumps(
        {"conn_type": "docker", "host": host, "port": int(port), "login": "bot", "password": "registry-pass"}
    ))  # fmt: skip
    image = local_copy(f"{registry}/team/app")
    op = make_op(docker_url, image=image, force_pull=True, pull_fallback=True, docker_conn_id="team_registry")
    assert op.execute({}) == "token=***"
    assert "registry login failed with a transient error" in capfd.readouterr().out
    op = make_op(docker_url, image=image, force_pull=True, docker_conn_id="team_registry")
    with pytest.raises(ImagePullError, match="login"):
        op.execute({})


# -- end to end with Airflow ----------------------------------------------------------------

EXPECTED = {
    "KNACK_APP_ID": sha("docker-knack-prod-app"),
    "KNACK_API_KEY": sha("docker-knack-prod-key"),
    "KNACK_TEST_APP_ID": sha("docker-knack-test-app"),
    "SOCRATA_TOKEN": sha("docker-socrata-token"),
    "SOCRATA_USER": sha("docker-socrata-user"),
    "CANARY_SECRET": sha(CANARY),
    "PLAIN": sha("not-a-secret"),
}


def xcom_and_rendered_rows(stack: AirflowStack, dag_id: str) -> str:
    import sqlite3

    with sqlite3.connect(stack.home / "airflow.db") as db:
        rows = db.execute("SELECT value FROM xcom WHERE dag_id = ?", (dag_id,)).fetchall()
        rows += db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?", (dag_id,)
        ).fetchall()
    return "\n".join(str(r[0]) for r in rows)


@pytest.fixture(scope="module")
def secret_docker_run(airflow_stack: AirflowStack, docker_url: str) -> str:
    result = airflow_stack.dags_test("secret_docker_e2e")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return airflow_stack.task_logs("secret_docker_e2e")["run_container"]


def test_dag_delivers_every_secret_to_the_container(secret_docker_run: str) -> None:
    assert digests_in_log(secret_docker_run) == EXPECTED


def test_dag_leaks_the_canary_nowhere(secret_docker_run: str, airflow_stack: AirflowStack) -> None:
    assert "careless log line: ***" in secret_docker_run
    assert CANARY not in secret_docker_run
    stored = xcom_and_rendered_rows(airflow_stack, "secret_docker_e2e")
    assert "last line ***" in stored, "the last output line went to XCom, scrubbed"
    assert "not-a-secret" in stored, "environment stays a normal rendered field"
    assert CANARY not in stored
    assert CANARY not in airflow_stack.db_dump()
