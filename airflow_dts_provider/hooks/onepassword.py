"""OnePasswordHook: an Airflow connection (or the team's OP_* variables) -> the shared client."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_dts_provider._onepassword import (
    ConnectSettings,
    Item,
    OnePasswordClient,
    OnePasswordConfigError,
    OnePasswordError,
    shared_client,
)

#: Connection extras understood by the hook (also declared as conn-fields in the provider info).
EXTRA_SETTINGS = {
    "vault": str,
    "cache_ttl": float,
    "timeout": float,
    "total_timeout": float,
    "max_retries": int,
}


class OnePasswordHook(BaseHook):
    """
    Read secrets from 1Password through a 1Password Connect server.

    Connection (type ``onepassword``): host = Connect URL (``http://op-connect:8080``),
    password = Connect token, extra ``vault`` = default vault (name or id), optional extras
    ``cache_ttl``, ``timeout`` (per read), ``total_timeout`` (per lookup, retries included),
    ``max_retries``. When the default connection
    ``onepassword_default`` does not exist, the hook falls back to the environment variables
    ``OP_CONNECT_HOST``/``OP_CONNECT``, ``OP_CONNECT_TOKEN``/``OP_API_TOKEN`` and
    ``OP_VAULT``/``OP_VAULT_ID``.

    :param onepassword_conn_id: connection to use.
    :param vault: default vault for references that name none (overrides the connection's).
    """

    conn_name_attr = "onepassword_conn_id"
    default_conn_name = "onepassword_default"
    conn_type = "onepassword"
    hook_name = "1Password Connect"

    def __init__(self, onepassword_conn_id: str = default_conn_name, vault: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.onepassword_conn_id = onepassword_conn_id
        self.vault = vault

    @cached_property
    def settings(self) -> ConnectSettings:
        try:
            conn = self.get_connection(self.onepassword_conn_id)
        except AirflowNotFoundException:
            if self.onepassword_conn_id != self.default_conn_name:
                raise
            self.log.info(
                "Connection %r not found; using the OP_CONNECT_* / OP_API_TOKEN environment variables",
                self.onepassword_conn_id,
            )
            return ConnectSettings.from_env(vault=self.vault)
        return settings_from_connection(conn, vault=self.vault)

    def get_conn(self) -> OnePasswordClient:
        """The process-wide client for these settings (shared cache with the backend and operator)."""
        return shared_client(self.settings)

    def get_item(self, item: str, vault: str | None = None) -> Item:
        """Full item by title or id. Every field value is hidden from its repr and registered with the masker."""
        return self.get_conn().get_item(item, vault)

    def get_field(self, item: str, field: str, vault: str | None = None) -> str:
        """One field: ``"section.field"``, ``".field"`` (no section) or ``"field"`` (unique label)."""
        return self.get_conn().get_field(item, field, vault)

    def resolve(self, reference: str | Mapping[str, str]) -> str:
        """Value of an ``op://vault/item/[section/]field`` reference or an ``opitem``/``opfield`` dict."""
        return self.get_conn().resolve(reference)

    def resolve_many(self, secrets: Mapping[str, Any]) -> dict[str, str]:
        """Resolve a ``REQUIRED_SECRETS``-shaped dict: one fetch per distinct item, overlapped."""
        return self.get_conn().resolve_many(secrets)

    def test_connection(self) -> tuple[bool, str]:
        """Heartbeat, then list the default vault's items (proves the token can read it)."""
        try:
            client = self.get_conn()
            client.heartbeat()
            if not client.settings.vault:
                return True, f"1Password Connect at {client.settings.display_host} is up (no default vault to check)"
            vault_id = client.check_vault()
        except (OnePasswordError, AirflowNotFoundException) as err:
            return False, str(err)
        return (
            True,
            f"1Password Connect at {client.settings.display_host} is up; vault {client.settings.vault!r} "
            + (f"({vault_id}) is readable"),
        )


def settings_from_connection(conn: Any, vault: str | None = None) -> ConnectSettings:
    """Build client settings from an Airflow Connection; errors name the connection, never the token."""
    if not conn.host:
        raise OnePasswordConfigError(
            f"connection {conn.conn_id!r} has no host: set it to the Connect URL, e.g. http://op-connect:8080"
        )
    if not conn.password:
        raise OnePasswordConfigError(
            f"connection {conn.conn_id!r} has no password: set it to the 1Password Connect token"
        )
    host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
    if conn.port and "://" not in conn.host:
        host = f"{host}:{conn.port}"
    extra = conn.extra_dejson or {}
    values: dict[str, Any] = {}
    for name, kind in EXTRA_SETTINGS.items():
        raw = extra.get(name, extra.get(f"extra__onepassword__{name}"))
        if raw in (None, ""):
            continue
        try:
            values[name] = kind(raw)
        except (TypeError, ValueError):
            raise OnePasswordConfigError(
                f"connection {conn.conn_id!r}: extra {name!r} must be {kind.__name__}, got {raw!r}"
            ) from None
    if vault:
        values["vault"] = vault
    return ConnectSettings(host=host, token=conn.password, **values)
