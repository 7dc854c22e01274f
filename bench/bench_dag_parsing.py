"""Benchmark: Connect requests per DAG-parsing loop for top-level ``Variable.get`` calls.

100 DAG files, each calling ``Variable.get`` for one of 10 keys at top level, parsed over and over by
a real ``airflow dag-processor`` (2 parsing processes, each file at most every 10 s) against the dev
vault. Each DAG file appends a line to a counter file when parsed, so parses are counted exactly.
Compared: the peer package's call pattern (baseline, see peer_style_backend.py), our backend with
its default ``delegate_in_dag_parsing=True``, and ours with it off.

This measures the cost of a pattern ``dts-airflow lint`` reports as an error, for DAG files that still
have it (the team's Airflow 2 files): what a file computes while parsed is stored in the metadata DB
unmasked, so it is no way to use secrets (README, "What is masked").

Run: ``.venv/bin/python bench/bench_dag_parsing.py [--seconds 60]`` (takes ~3 x seconds + start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_dts_provider.devvault import DevVaultServer, VaultData

TOKEN = "bench-token"
FILES, KEYS = 100, 10
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_TEMPLATE = """
import pendulum
from airflow.sdk import Variable, dag, task
with open({counter!r}, "a") as counter:
    counter.write("{name}\\n")
VALUE = Variable.get("key_{key}", default="missing")
@dag(dag_id="{name}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), tags=[VALUE])
def d():
    @task
    def t():
        pass
    t()
d()
"""


def run_config(label: str, backend: str, kwargs: dict[str, object], server: DevVaultServer, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home, dags, counter = Path(tmp, "home"), Path(tmp, "dags"), Path(tmp, "parses.txt")
        home.mkdir()
        dags.mkdir()
        for n in range(FILES):
            name = f"bench_{n:03d}"
            (dags / f"{name}.py").write_text(DAG_TEMPLATE.format(counter=str(counter), name=name, key=n % KEYS))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "OP_"))}
        env.update({
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "AIRFLOW__SECRETS__BACKEND": backend,
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(kwargs),
            "PYTHONPATH": str(Path(__file__).parent),
        })  # fmt: skip
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True)
        server.reset()
        proc = subprocess.Popen(
            [AIRFLOW, "dag-processor"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        time.sleep(seconds)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        parses = len(counter.read_text().splitlines()) if counter.exists() else 0
        requests = server.request_count
    loops = parses / FILES
    return {"label": label, "requests": requests, "parses": parses, "per_loop": requests / loops if loops else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    items = [
        {"title": f"airflow/variables/key_{k}", "fields": [{"label": "value", "value": f"v{k}"}]} for k in range(KEYS)
    ]
    server = DevVaultServer(VaultData.from_dict({"vaults": [{"name": "Bench", "items": items}]}), token=TOKEN).start()
    common = {"connect_host": server.url, "connect_token": TOKEN, "vault": "Bench"}
    ours = "airflow_dts_provider.secrets.onepassword.OnePasswordBackend"
    rows = [
        run_config("peer design (baseline)", "peer_style_backend.PeerStyleBackend", common, server, args.seconds),
        run_config("ours, default", ours, common, server, args.seconds),
        run_config("ours, delegate_in_dag_parsing=False", ours, {**common, "delegate_in_dag_parsing": False},
                   server, args.seconds),
    ]  # fmt: skip
    server.stop()
    base = rows[0]["per_loop"]
    print(f"{FILES} DAG files, {KEYS} distinct keys, {args.seconds:.0f} s of real dag-processor parsing each")
    print(f"{'backend':<38}{'parses':>8}{'loops':>7}{'requests':>10}{'req/loop':>10}{'ratio':>9}")
    for r in rows:
        ratio = f"{base / r['per_loop']:.1f}x" if r["per_loop"] else "inf"
        loops = r["parses"] / FILES
        print(f"{r['label']:<38}{r['parses']:>8}{loops:>7.1f}{r['requests']:>10}{r['per_loop']:>10.1f}{ratio:>9}")


if __name__ == "__main__":
    main()
