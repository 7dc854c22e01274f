"""Benchmark: the team's secrets shape resolved the old way (SDK ``load_dict``) vs our client.

Shape: 20 secrets over 8 items, items addressed by title, vault by id, against the dev vault with
20 ms added to every request (roughly a Connect server on the LAN). Prints requests and wall time
for each way and the ratios, baseline = ``onepasswordconnectsdk.load_dict`` (what DAGs call today).

Run: ``.venv/bin/python bench/bench_resolve.py [--latency 0.02] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import onepasswordconnectsdk
from onepasswordconnectsdk.client import new_client

from airflow_dts_provider._onepassword import ConnectSettings, OnePasswordClient
from airflow_dts_provider.devvault import DevVaultServer, VaultData

TOKEN = "bench-token"
ITEMS = 8
SECRETS = 20


def bench_vault() -> tuple[VaultData, dict[str, dict[str, str]]]:
    """8 items with prod/test sections; 20 secrets spread over them like a real DAG's REQUIRED_SECRETS."""
    items: list[dict[str, Any]] = []
    for n in range(ITEMS):
        fields = [
            {"label": label, "section": section, "value": f"value-{n}-{section}-{label}", "type": "CONCEALED"}
            for section in ("prod", "test")
            for label in ("appId", "apiKey")
        ]
        items.append({"title": f"Service {n} API", "fields": fields})
    data = VaultData.from_dict({"vaults": [{"name": "Bench", "items": items}]})
    required: dict[str, dict[str, str]] = {}
    for i in range(SECRETS):
        n = i % ITEMS
        section, label = [("prod", "appId"), ("prod", "apiKey"), ("test", "apiKey")][i // ITEMS]
        required[f"SECRET_{i:02d}"] = {"opitem": f"Service {n} API", "opfield": f"{section}.{label}"}
    return data, required


def measure(server: DevVaultServer, fn: Callable[[], dict[str, str]]) -> tuple[int, float, dict[str, str]]:
    server.reset_counts()
    started = time.perf_counter()
    values = fn()
    return server.request_count, time.perf_counter() - started, values


def print_table(rows: dict[str, list[tuple[int, float]]]) -> None:
    """Median requests and wall time per way, with ratios against the first row (the baseline)."""
    width = max(len(label) for label in rows) + 2
    base_requests, base_seconds = (statistics.median(col) for col in zip(*next(iter(rows.values())), strict=True))
    print(f"{'way':<{width}}{'requests':>9}{'wall ms':>10}{'req ratio':>11}{'time ratio':>12}")
    for label, runs in rows.items():
        requests, seconds = (statistics.median(col) for col in zip(*runs, strict=True))
        req_ratio = f"{base_requests / requests:.1f}x" if requests else "inf"
        print(f"{label:<{width}}{requests:>9.0f}{seconds * 1000:>10.1f}{req_ratio:>11}{base_seconds / seconds:>11.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    data, required = bench_vault()
    server = DevVaultServer(data, token=TOKEN).start()
    server.faults.latency = args.latency
    vault_id = data.vaults[0]["id"]
    os.environ["OP_VAULT"] = vault_id  # load_dict's default vault, as the team's DAGs set it

    def sdk_load_dict() -> dict[str, str]:
        return dict(onepasswordconnectsdk.load_dict(new_client(server.url, TOKEN), required))

    rows: dict[str, list[tuple[int, float]]] = {"sdk load_dict (baseline)": [], "ours, cold": [], "ours, warm": []}
    expected = None
    for _ in range(args.repeat):
        requests, seconds, values = measure(server, sdk_load_dict)
        rows["sdk load_dict (baseline)"].append((requests, seconds))
        expected = expected or values
        client = OnePasswordClient(ConnectSettings(host=server.url, token=TOKEN, vault=vault_id))
        for label in ("ours, cold", "ours, warm"):
            requests, seconds, values = measure(server, lambda c=client: c.resolve_many(required))
            assert values == expected, "both ways must return the same values"
            rows[label].append((requests, seconds))
        client.close()
    server.stop()

    print(f"{SECRETS} secrets over {ITEMS} items, vault by id, {args.latency * 1000:.0f} ms per request, "
          f"median of {args.repeat} runs")  # fmt: skip
    print_table(rows)


if __name__ == "__main__":
    main()
