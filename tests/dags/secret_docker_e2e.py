"""SecretDockerOperator end to end (tests/test_docker_operator.py): secrets from the dev vault into a
container on the local Podman engine; the container prints a sha256 of each variable it received."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from airflow_dts_provider.operators.docker import SecretDockerOperator

IMAGE = os.environ.get("DTS_TEST_IMAGE", "localhost/dts-busybox:latest")
DOCKER_URL = os.environ.get("DTS_DOCKER_URL", "unix:///tmp/dts-podman/podman.sock")
REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack", "opfield": "prod.appId"},
    "KNACK_API_KEY": {"opitem": "Knack", "opfield": "prod.apiKey"},
    "KNACK_TEST_APP_ID": {"opitem": "Knack", "opfield": "test.appId"},
    "SOCRATA_TOKEN": {"opitem": "Socrata", "opfield": ".appToken"},
    "SOCRATA_USER": "op://Docker Vault/Socrata/username",
    "CANARY_SECRET": "op://Docker Vault/Canary/secret",
}
PRINT_DIGESTS = (
    "for name in KNACK_APP_ID KNACK_API_KEY KNACK_TEST_APP_ID SOCRATA_TOKEN SOCRATA_USER CANARY_SECRET PLAIN; do "
    'printf "digest %s=" "$name"; eval "printf %s \\"\\$$name\\"" | sha256sum | cut -c1-64; done; '
    'echo "careless log line: $CANARY_SECRET"; echo "last line $CANARY_SECRET"'
)


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["tests"])
def secret_docker_e2e() -> None:
    SecretDockerOperator(
        task_id="run_container",
        image=IMAGE,
        docker_url=DOCKER_URL,
        command=["sh", "-c", PRINT_DIGESTS],
        environment={"PLAIN": "not-a-secret"},
        secrets=REQUIRED_SECRETS,
        onepassword_vault="Docker Vault",
        mount_tmp_dir=False,
    )


secret_docker_e2e()
