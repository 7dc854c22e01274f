"""A Docker task with 1Password secrets: the team's REQUIRED_SECRETS, passed straight to the operator.

Before (Airflow 2): ``env_vars = get_env_vars_task(REQUIRED_SECRETS)`` + ``DockerOperator(environment=env_vars)``
put every secret into XCom and the rendered-fields view. Here the values are fetched inside the task
and handed to the container only. Needs a Docker engine at DOCKER_HOST and an image that exists
there: scripts/dev starts a local Podman one with the example image (scripts/podman-setup alone
does the same and prints its URL).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from airflow_dts_provider.operators.docker import SecretDockerOperator

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack Data Tracker", "opfield": "prod.appId"},
    "KNACK_API_KEY": {"opitem": "Knack Data Tracker", "opfield": "prod.apiKey"},
    "SOCRATA_APP_TOKEN": {"opitem": "Socrata Open Data", "opfield": ".appToken"},
    "PGPASSWORD": "op://DTS Dev/Warehouse Postgres/password",
}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    tags=["example", "docker", "1password", "repo:airflow-dts-provider"],
)
def example_secret_docker() -> None:
    SecretDockerOperator(
        task_id="knack_to_socrata",
        image=os.environ.get("DTS_EXAMPLE_IMAGE", "localhost/dts-busybox:latest"),
        docker_url=os.environ.get("DOCKER_HOST", "unix:///tmp/dts-podman/podman.sock"),
        command=["sh", "-c", 'echo "publishing with app $KNACK_APP_ID (values are masked: $KNACK_API_KEY)"'],
        environment={"ENVIRONMENT": "development"},  # not secret: stays a normal, rendered field
        secrets=REQUIRED_SECRETS,
        pull_fallback=True,  # registry down? run the copy we already have
        mount_tmp_dir=False,
    )


example_secret_docker()
