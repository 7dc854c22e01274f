"""Run the dev vault: ``python -m airflow_dts_provider.devvault --file vault.yaml --port 8089 --token T``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from importlib import resources

from airflow_dts_provider.devvault.server import DevVaultServer
from airflow_dts_provider.devvault.store import VaultData, VaultFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_dts_provider.devvault",
        description="Serve a local vault file over the 1Password Connect REST API (v1 subset).",
    )
    parser.add_argument("--file", help="YAML or JSON vault file (default: the bundled sample vault)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port (default 8089; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=os.environ.get("DEVVAULT_TOKEN"),
        help="bearer token clients must send (default $DEVVAULT_TOKEN, else a random one is printed)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    args = parser.parse_args(argv)

    try:
        if args.file:
            data = VaultData.load(args.file)
        else:
            sample = resources.files("airflow_dts_provider.devvault").joinpath("sample_vault.yaml")
            with resources.as_file(sample) as path:
                data = VaultData.load(path)
    except (OSError, VaultFileError) as err:
        print(f"devvault: {err}", file=sys.stderr)
        return 2
    token = args.token or secrets.token_urlsafe(24)
    server = DevVaultServer(data, token=token, host=args.host, port=args.port)
    server.faults.latency = args.latency
    vaults = ", ".join(f"{v['name']} ({v['id']}, {v['items']} items)" for v in data.vaults)
    print(f"devvault: serving {vaults} on {server.url}", flush=True)
    if not args.token:
        print(f"devvault: token {token}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
