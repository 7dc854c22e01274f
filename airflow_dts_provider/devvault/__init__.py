"""Offline 1Password Connect stand-in: ``python -m airflow_dts_provider.devvault --help``."""

from __future__ import annotations

from airflow_dts_provider.devvault.server import DevVaultServer, FaultPlan
from airflow_dts_provider.devvault.store import VaultData, VaultFileError, stable_id

__all__ = ["DevVaultServer", "FaultPlan", "VaultData", "VaultFileError", "stable_id"]
