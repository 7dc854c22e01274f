"""Shared fixtures: a real dev vault (Connect API over HTTP) and clients pointed at it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_dts_provider._onepassword import ConnectSettings, OnePasswordClient
from airflow_dts_provider.devvault import DevVaultServer, VaultData

TESTS = Path(__file__).parent
REPO = TESTS.parent
VAULT_FILE = TESTS / "data" / "test_vault.yaml"
TOKEN = "test-token-0d1b2c"  # noqa: S105 - the dev vault's token, not a real secret
CANARY = "CANARY-7f3a9c1e-do-not-leak"
#: CI sets this so that a test needing a missing tool fails instead of skipping.
REQUIRE_ALL = os.environ.get("DTS_REQUIRE_ALL_TESTS") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a dependency is missing; fail in CI, where everything must run."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required test dependency missing: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def vault_data() -> VaultData:
    return VaultData.load(VAULT_FILE)


@pytest.fixture(scope="session")
def devvault_server(vault_data: VaultData) -> Iterator[DevVaultServer]:
    server = DevVaultServer(vault_data, token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def devvault(devvault_server: DevVaultServer) -> Iterator[DevVaultServer]:
    """The dev vault with request counts and faults reset before and after the test."""
    devvault_server.reset()
    yield devvault_server
    devvault_server.reset()


@pytest.fixture
def make_client(devvault: DevVaultServer) -> Iterator[Callable[..., OnePasswordClient]]:
    """Fresh (unshared) clients with test-sized timeouts; each test starts with a cold cache."""
    made: list[OnePasswordClient] = []

    def factory(**overrides: Any) -> OnePasswordClient:
        values: dict[str, Any] = {
            "host": devvault.url,
            "token": TOKEN,
            "vault": "Team Vault",
            "timeout": 2.0,
            "max_retries": 2,
            "backoff": 0.01,
            "max_backoff": 0.5,
        }
        values.update(overrides)
        client = OnePasswordClient(ConnectSettings(**values))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def vault_id(data: VaultData, name: str) -> str:
    return next(v["id"] for v in data.vaults if v["name"] == name)


def item_ids(data: VaultData, vault: str, title: str) -> list[str]:
    return [i["id"] for i in data.items[vault_id(data, vault)] if i["title"] == title]


@pytest.fixture
def airflow_env(tmp_path: Path) -> dict[str, str]:
    """Environment for an isolated ``airflow`` CLI subprocess (own AIRFLOW_HOME, SQLite)."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "OP_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    return env


def run_airflow(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
