"""The team's Airflow 2 pattern, for contrast: secrets fetched by a task travel through XCom.

`get_env_vars_task` below does what the team's utils.onepassword helper did (SDK load_dict in a task,
return the dict); DockerOperator(environment=...) then receives it as a rendered template field.
"""

from __future__ import annotations

import os

import onepasswordconnectsdk
import pendulum
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import dag, task
from onepasswordconnectsdk.client import new_client

REQUIRED_SECRETS = {"OLD_WAY_SECRET": {"opitem": "Old Way Canary", "opfield": ".secret", "opvault": "Docker Vault"}}


@task
def get_env_vars_task(required_secrets: dict) -> dict:
    client = new_client(os.environ["OP_CONNECT"], os.environ["OP_API_TOKEN"])
    return onepasswordconnectsdk.load_dict(client, required_secrets)


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["tests"])
def old_way_docker_e2e() -> None:
    env_vars = get_env_vars_task(REQUIRED_SECRETS)
    DockerOperator(
        task_id="run_container",
        image=os.environ.get("DTS_TEST_IMAGE", "localhost/dts-busybox:latest"),
        docker_url=os.environ.get("DTS_DOCKER_URL", "unix:///tmp/dts-podman/podman.sock"),
        command=["sh", "-c", 'test -n "$OLD_WAY_SECRET"'],
        environment=env_vars,
        mount_tmp_dir=False,
        auto_remove="success",
    )


old_way_docker_e2e()
