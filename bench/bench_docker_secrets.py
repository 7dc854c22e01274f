"""Benchmark: one Docker task with the seed-shaped 20 secrets over 8 items, old way vs SecretDockerOperator.

Old way (baseline): the team's two-task pattern, ``get_env_vars_task`` (SDK ``load_dict``) then
``DockerOperator(environment=...)``. New: ``SecretDockerOperator(secrets=...)``. Both run the same
container on the local Podman engine (scripts/podman-setup) against the dev vault with 20 ms added to
every Connect request. Prints Connect requests and wall time (median of runs) and the ratios.
Task scheduling overhead of the old way's extra task is not included (it would only widen the gap).

Run: ``.venv/bin/python bench/bench_docker_secrets.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onepasswordconnectsdk
from airflow.providers.docker.operators.docker import DockerOperator
from onepasswordconnectsdk.client import new_client

from airflow_dts_provider._onepassword import client as client_module
from airflow_dts_provider.devvault import DevVaultServer
from airflow_dts_provider.operators.docker import SecretDockerOperator

sys.path.insert(0, str(Path(__file__).parent))
from bench_resolve import TOKEN, bench_vault, print_table

IMAGE = "localhost/dts-busybox:latest"
COMMAND = ["sh", "-c", "env | grep -c ^SECRET_"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    docker_url = subprocess.run(
        [str(Path(__file__).parents[1] / "scripts" / "podman-setup")], capture_output=True, text=True, check=True
    ).stdout.strip()

    data, required = bench_vault()
    server = DevVaultServer(data, token=TOKEN).start()
    server.faults.latency = args.latency
    vault_id = data.vaults[0]["id"]
    os.environ["OP_VAULT"] = vault_id
    os.environ["AIRFLOW_CONN_ONEPASSWORD_DEFAULT"] = json.dumps(
        {"conn_type": "onepassword", "host": server.url, "password": TOKEN, "extra": {"vault": vault_id}}
    )
    common = {"image": IMAGE, "docker_url": docker_url, "command": COMMAND, "mount_tmp_dir": False,
              "auto_remove": "success"}  # fmt: skip

    def old_way() -> object:
        env_vars = onepasswordconnectsdk.load_dict(new_client(server.url, TOKEN), required)  # task 1 -> XCom
        return DockerOperator(task_id="old", environment=env_vars, **common).execute({})  # type: ignore[arg-type]

    def new_way() -> object:
        client_module._shared.clear()  # a task process starts with an empty cache
        return SecretDockerOperator(task_id="new", secrets=required, **common).execute({})  # type: ignore[arg-type]

    rows: dict[str, list[tuple[int, float]]] = {
        "old: get_env_vars_task + DockerOperator": [],
        "SecretDockerOperator": [],
    }
    for _ in range(args.repeat):
        for label, run in zip(rows, (old_way, new_way), strict=True):
            server.reset_counts()
            started = time.perf_counter()
            output = run()
            rows[label].append((server.request_count, time.perf_counter() - started))
            assert str(output).strip() == str(len(required)), output
    server.stop()

    print(f"{len(required)} secrets over 8 items, {args.latency * 1000:.0f} ms per Connect request, "
          f"container on local Podman, median of {args.repeat}")  # fmt: skip
    print_table(rows)


if __name__ == "__main__":
    main()
