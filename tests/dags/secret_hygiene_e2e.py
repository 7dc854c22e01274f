"""DAGs for tests/test_secret_hygiene_e2e.py: the leak paths of issue 13, tried in real runs.

Every value named here lives only in the dev vault; the test then searches logs, XCom, rendered
fields, the metadata DB, API answers and Slack bodies for it.
"""

from __future__ import annotations

import html
import json
import os
from urllib.parse import quote_plus

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import BaseHook, Variable, dag, task

from airflow_dts_provider.hooks.onepassword import OnePasswordHook
from airflow_dts_provider.notifications.slack import SlackNotifier
from airflow_dts_provider.operators.docker import SecretDockerOperator

IMAGE = os.environ.get("DTS_TEST_IMAGE", "localhost/dts-busybox:latest")
DOCKER_URL = os.environ.get("DTS_DOCKER_URL", "unix:///tmp/dts-podman/podman.sock")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: What a hostile or careless exception message could hold; Slack must show it as text.
INJECTION = "<!channel> <@U123> <https://evil.example|Re-authenticate here> ``` closing fence"
FAILED_CONTAINER = "dts-hygiene-failed-with-secrets"
ENGINE = {"image": IMAGE, "docker_url": DOCKER_URL, "mount_tmp_dir": False}


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"])
def hygiene_docker_e2e() -> None:
    # A two-line secret printed whole: both lines reach the log; the last one is XCom.
    SecretDockerOperator(
        task_id="multiline",
        command=["sh", "-c", 'echo "value: $MULTI"'],
        secrets={"MULTI": "op://Docker Vault/Multiline Canary/secret"},
        **ENGINE,
    )
    # A container that received secrets and failed, with the default auto_remove.
    SecretDockerOperator(
        task_id="failed_container",
        command=["sh", "-c", "exit 3"],
        secrets={"CANARY_SECRET": "op://Docker Vault/Canary/secret"},
        container_name=FAILED_CONTAINER,
        **ENGINE,
    )


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"])
def hygiene_templates_e2e() -> None:
    BashOperator(
        task_id="connection_extras",
        bash_command=(
            'echo "section extra: {{ conn.canary_extra.extra_dejson.api_key }}" && '
            'echo "json extra: {{ conn.canary_extra.extra_dejson.client_secret }}"'
        ),
        do_xcom_push=False,
    )
    # BashOperator pushes its last output line to XCom: here a password (the XCom backend's job).
    BashOperator(task_id="echoes_a_password", bash_command='echo "password: {{ conn.canary_conn.password }}"')

    @task
    def returns_a_secret() -> dict[str, str]:
        return {"careless": Variable.get("canary_var"), "fine": "not secret"}

    returns_a_secret()


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"])
def hygiene_encoded_e2e() -> None:
    """Issue 27, finding 1: a password with every character an encoder changes, written out the usual ways."""
    # The usual way to hand psql or SQLAlchemy a DSN; the last line is XCom.
    BashOperator(task_id="dsn_from_get_uri", bash_command='echo "dsn: {{ conn.encoded_canary.get_uri() }}"')

    @task
    def prints_encoded_forms() -> dict[str, str]:
        conn = BaseHook.get_connection("encoded_canary")
        password = conn.password or ""
        print(json.dumps({"password": password}))
        print({"password": password, "extra": conn.extra_dejson})
        print(f"form: {quote_plus(password)} html: {html.escape(password)}")
        return {"as_json": json.dumps(password), "dsn": conn.get_uri()}

    @task
    def shows_rendered_fields(dsn: str, as_json: str) -> None:
        print(f"rendered: {len(dsn)} and {len(as_json)} characters")

    prints_encoded_forms()
    shows_rendered_fields(
        dsn="{{ conn.encoded_canary.get_uri() }}", as_json="{{ conn.encoded_canary.password | tojson }}"
    )


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"])
def hygiene_token_e2e() -> None:
    """Issue 27, finding 3: a task printing its environment shows no Connect token; lookups still work."""
    BashOperator(
        task_id="prints_its_environment",
        bash_command='env | sort; echo "token variables: $(env | grep -c "^OP_[A-Z_]*TOKEN=")"',
    )

    @task(multiple_outputs=False)
    def looks_up_after_the_token_left_the_environment() -> dict[str, object]:
        from airflow_dts_provider._onepassword import ConnectSettings, shared_client

        in_environment = [name for name in ("OP_CONNECT_TOKEN", "OP_API_TOKEN") if name in os.environ]
        client = shared_client(ConnectSettings.from_env(vault="Docker Vault"))
        value = client.resolve("op://Docker Vault/Canary/secret")
        return {"token_variables_in_environment": in_environment, "resolved_characters": len(value)}

    looks_up_after_the_token_left_the_environment()


@task
def hostile_error() -> None:
    raise RuntimeError(f"upstream said: {INJECTION}")


@task
def lookup_with_newline_token() -> None:
    OnePasswordHook("onepassword_newline").get_field("Canary", "secret", vault="Docker Vault")


@dag(schedule=None, start_date=START, catchup=False, tags=["tests"],
     default_args={"on_failure_callback": [SlackNotifier(kind="failure")]})  # fmt: skip
def hygiene_slack_e2e() -> None:
    hostile_error()
    lookup_with_newline_token()


hygiene_docker_e2e()
hygiene_templates_e2e()
hygiene_encoded_e2e()
hygiene_token_e2e()
hygiene_slack_e2e()
