"""OnePasswordBackend: Airflow Connections, Variables and config values read from 1Password items.

A DAG author writes ``{{ conn.my_db.password }}`` or ``Variable.get("api_key")`` and the value comes
from the 1Password item titled ``airflow/connections/my_db`` or ``airflow/variables/api_key``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
from airflow.secrets import BaseSecretsBackend

from airflow_dts_provider._onepassword import (
    AmbiguousItemError,
    ConnectSettings,
    Item,
    ItemField,
    ItemNotFoundError,
    OnePasswordClient,
    OnePasswordConfigError,
    OnePasswordError,
    OnePasswordUnauthorizedError,
    OnePasswordUnavailableError,
    VaultNotFoundError,
    mask,
    mask_json_leaves,
    shared_client,
)
from airflow_dts_provider._onepassword.errors import AmbiguousFieldError
from airflow_dts_provider._onepassword.models import fold

log = logging.getLogger(__name__)

#: Field labels (or ids) that fill each Connection attribute, first match wins. Case-insensitive.
CONNECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "conn_type": ("conn_type", "connection type"),
    "host": ("host", "hostname", "server", "url", "website"),
    "login": ("login", "username", "user"),
    "password": ("password", "credential", "token", "api key"),
    "schema": ("schema", "database"),
    "port": ("port",),
    "description": ("description",),
}
#: A field holding a whole connection as an Airflow URI or Airflow's JSON form.
WHOLE_CONNECTION_FIELDS = ("uri", "conn_uri", "json")
#: Fields holding Variable / config values.
VALUE_FIELDS = ("value",)
#: 1Password's DATABASE item "type" menu -> Airflow connection type.
DATABASE_TYPES = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlserver": "mssql",
    "mssql": "mssql",
    "oracle": "oracle",
    "sqlite": "sqlite",
    "db2": "db2",
    "redshift": "redshift",
}


class OnePasswordSecretUnusable(AirflowSecretsBackendAccessDenied):
    """1Password holds this key but cannot give its value now: Airflow stops its search here.

    Raised for an item that is ambiguous or malformed, and during an outage for a key 1Password
    holds. Airflow asks no other source after it (``AirflowSecretsBackendAccessDenied``), so a stale
    copy in the environment or the database is never used in its place. The message names the key,
    item and field, never a value.
    """


class OnePasswordBackend(BaseSecretsBackend):
    """
    Read Airflow Connections, Variables and config values from 1Password through 1Password Connect.

    .. code-block:: ini

        [secrets]
        backend = airflow_dts_provider.secrets.onepassword.OnePasswordBackend
        backend_kwargs = {"vault": "DTS Airflow"}

    :param connect_host: Connect URL. Default: ``OP_CONNECT_HOST``, then ``OP_CONNECT``.
    :param connect_token: Connect token. Default: ``OP_CONNECT_TOKEN``, then ``OP_API_TOKEN``.
    :param vault: vault name or id holding the items. Default: ``OP_VAULT``, then ``OP_VAULT_ID``.
    :param connections_prefix: item title prefix for Connections (``None`` disables, ``""`` = no prefix).
    :param variables_prefix: item title prefix for Variables (``None`` disables, ``""`` = no prefix).
    :param config_prefix: item title prefix for ``*_secret`` config options (``None`` disables).
    :param connections_lookup_pattern: regex a conn_id must match (``re.match``, case-insensitive) to be
        looked up; others return None without a request. Likewise the two below.
    :param variables_lookup_pattern: regex for Variable keys.
    :param config_lookup_pattern: regex for config keys.
    :param sep: separator between prefix and key (default ``/``: ``airflow/connections/my_db``).
    :param cache_ttl: seconds items are reused in this process (shared client cache).
    :param miss_ttl: seconds a missing item is remembered, so repeated lookups of keys that live
        elsewhere (environment, metastore) cost nothing.
    :param outage_backoff: after Connect was unreachable or refused the token, seconds during which
        lookups answer at once instead of waiting on Connect again (one warning per outage).
    :param outage_fallback: during an outage, a key 1Password holds (found by this process before, or
        matching the kind's lookup pattern) raises ``OnePasswordSecretUnusable`` by default, so Airflow
        uses no other copy of it; ``True`` returns None instead and Airflow goes on to the environment
        and its database. A key 1Password does not hold, or one this process cannot tell, returns None.
    :param timeout: per-read timeout in seconds.
    :param total_timeout: seconds one lookup may take, every request and retry included.
    :param max_retries: retries for transient errors.
    :param delegate_in_dag_parsing: in DAG-file parsing subprocesses (and the triggerer's runner), return
        None so Airflow asks the long-lived DAG processor (triggerer) over its supervisor channel; that
        process's backend keeps the cache. Without this every parse of every file starts cold, because
        Airflow parses each file in a fresh process.
    """

    def __init__(
        self,
        connect_host: str | None = None,
        connect_token: str | None = None,
        vault: str | None = None,
        connections_prefix: str | None = "airflow/connections",
        variables_prefix: str | None = "airflow/variables",
        config_prefix: str | None = "airflow/config",
        connections_lookup_pattern: str | None = None,
        variables_lookup_pattern: str | None = None,
        config_lookup_pattern: str | None = None,
        sep: str = "/",
        cache_ttl: float = 300.0,
        miss_ttl: float = 60.0,
        outage_backoff: float = 30.0,
        outage_fallback: bool = False,
        timeout: float = 5.0,
        total_timeout: float = 15.0,
        max_retries: int = 1,
        delegate_in_dag_parsing: bool = True,
        **unknown: Any,
    ):
        super().__init__()
        if unknown:
            params = inspect.signature(OnePasswordBackend.__init__).parameters
            accepted = ", ".join(p for p in params if p not in ("self", "unknown"))
            raise OnePasswordConfigError(
                f"OnePasswordBackend got unknown backend_kwargs {sorted(unknown)}; accepted: {accepted}"
            )
        self.settings = ConnectSettings.from_env(
            host=connect_host, token=connect_token, vault=vault, cache_ttl=cache_ttl, timeout=timeout,
            total_timeout=total_timeout, max_retries=max_retries,
        )  # fmt: skip
        if not self.settings.vault:
            raise OnePasswordConfigError(
                "OnePasswordBackend needs a vault: set backend_kwargs 'vault' or OP_VAULT / OP_VAULT_ID"
            )
        for name, value in (("sep", sep), ("connections_prefix", connections_prefix),
                            ("variables_prefix", variables_prefix), ("config_prefix", config_prefix)):  # fmt: skip
            if value is not None and not isinstance(value, str):
                raise OnePasswordConfigError(f"OnePasswordBackend: {name} must be a string or null, got {value!r}")
        self.prefixes = {"connection": connections_prefix, "variable": variables_prefix, "config": config_prefix}
        self.patterns = {
            "connection": _compile("connections_lookup_pattern", connections_lookup_pattern),
            "variable": _compile("variables_lookup_pattern", variables_lookup_pattern),
            "config": _compile("config_lookup_pattern", config_lookup_pattern),
        }
        self.sep = sep
        self.delegate_in_dag_parsing = bool(delegate_in_dag_parsing)
        self.miss_ttl = float(miss_ttl)
        self.outage_backoff = float(outage_backoff)
        self.outage_fallback = bool(outage_fallback)
        self._misses: dict[str, float] = {}
        self._held: set[str] = set()  # titles this process found in 1Password (bounded like the misses)
        self._outage_until = 0.0
        self._outage_cause = ""
        self._lock = threading.Lock()

    @property
    def client(self) -> OnePasswordClient:
        return shared_client(self.settings)

    # ------------------------------------------------------------------ Airflow's interface
    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        """The connection as Airflow's JSON form (or the item's ``uri``/``json`` field verbatim)."""
        item = self._lookup("connection", conn_id)
        if item is None:
            return None
        try:
            value = connection_value(item, self.settings.vault or "")
        except OnePasswordError as err:  # a malformed item: 1Password holds the key, so no other copy is used
            raise OnePasswordSecretUnusable(f"1Password connection {conn_id!r} not usable: {err}") from None
        mask_connection(item, value)
        return value

    def get_connection(self, conn_id: str, team_name: str | None = None) -> Any:
        if self._asks_supervisor("connection", conn_id):
            return _supervisor_backend().get_connection(conn_id)
        return super().get_connection(conn_id, team_name=team_name)

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        if self._asks_supervisor("variable", key):
            return _supervisor_backend().get_variable(key)
        item = self._lookup("variable", key)
        return None if item is None else self._single_value(item, "variable", key)

    def get_config(self, key: str) -> str | None:
        item = self._lookup("config", key)
        return None if item is None else self._single_value(item, "config", key)

    # ------------------------------------------------------------------ lookups
    def title_for(self, kind: str, key: str) -> str | None:
        """The item title for a key, or None when this kind is disabled or the key is filtered out."""
        prefix = self.prefixes[kind]
        pattern = self.patterns[kind]
        if prefix is None or (pattern is not None and not pattern.match(key)):
            return None
        return f"{prefix}{self.sep}{key}" if prefix else key

    def _asks_supervisor(self, kind: str, key: str) -> bool:
        """True in a DAG-parsing child, for a key this backend would look up: the DAG processor answers.

        Its answer comes from its own chain, this backend first (with the cache every parse shares),
        then the environment and the database: the order a task's lookup follows at run time. Returning
        None here instead would let the child's environment answer before 1Password is asked.
        """
        if not (self.delegate_in_dag_parsing and self.title_for(kind, key) is not None):
            return False
        if not in_supervised_parsing_process():
            return False
        log.debug("%s %r: asked of the DAG processor, whose backend keeps the cache", kind, key)
        return True

    def _lookup(self, kind: str, key: str) -> Item | None:
        title = self.title_for(kind, key)
        if title is None:
            return None
        if self.delegate_in_dag_parsing and in_supervised_parsing_process():
            log.debug("%s %r: left to the DAG processor's backend (shared cache)", kind, key)
            return None
        now = time.monotonic()
        with self._lock:
            if now < self._outage_until:
                log.debug("1Password lookup of %s %r skipped: Connect failed recently", kind, key)
                self._refuse_if_held(kind, key, title, self._outage_cause)
                return None
            if self._misses.get(title, 0.0) > now:
                return None
        try:
            item = self.client.fetch_item(title)
        except (ItemNotFoundError, VaultNotFoundError) as err:
            log.debug("No 1Password item for %s %r: %s", kind, key, err)
            self._remember_miss(title)
            return None
        except AmbiguousItemError as err:
            raise OnePasswordSecretUnusable(f"1Password {kind} {key!r} not usable: {err}") from None
        except (OnePasswordUnavailableError, OnePasswordUnauthorizedError) as err:
            with self._lock:
                first = now >= self._outage_until
                self._outage_until = time.monotonic() + self.outage_backoff
                self._outage_cause = str(err)
            if first:
                log.warning(
                    "1Password secrets backend cannot read %s %r (%s); lookups skip 1Password for %gs",
                    kind, key, err, self.outage_backoff,
                )  # fmt: skip
            self._refuse_if_held(kind, key, title, str(err))
            return None
        except OnePasswordError as err:  # Connect answered, but not as Connect does: as an outage, once
            log.warning("1Password %s %r not read: %s", kind, key, err)
            self._refuse_if_held(kind, key, title, str(err))
            return None
        with self._lock:
            if len(self._held) > 10_000:
                self._held.clear()
            self._held.add(title)
        return item

    def _refuse_if_held(self, kind: str, key: str, title: str, cause: str) -> None:
        """During an outage: stop Airflow's search for a key 1Password holds; else let it ask its next source."""
        pattern = self.patterns[kind]
        holds = title in self._held or (pattern is not None and pattern.match(key) is not None)
        if self.outage_fallback or not holds:
            return
        raise OnePasswordSecretUnusable(
            f"1Password holds {kind} {key!r} (item {title!r}) but cannot be read ({cause}); no other copy is "
            "used in its place (backend_kwargs outage_fallback=true allows that)"
        )

    def _remember_miss(self, title: str) -> None:
        if self.miss_ttl <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._misses) > 10_000:  # keys come from DAG code; keep the map bounded anyway
                self._misses = {t: until for t, until in self._misses.items() if until > now}
            self._misses[title] = now + self.miss_ttl

    def _single_value(self, item: Item, kind: str, key: str) -> str | None:
        try:
            field = variable_field(item, self.settings.vault or "")
        except AmbiguousFieldError as err:
            raise OnePasswordSecretUnusable(f"1Password {kind} {key!r} not usable: {err}") from None
        if field is None:
            labels = ", ".join(f.label for f in item.fields) or "none"
            raise OnePasswordSecretUnusable(
                f"1Password item {item.title!r} for {kind} {key!r} has no 'value' field and no single obvious one "
                f"(fields: {labels}); label the field holding the value 'value'"
            )
        if field.value:
            mask(field.value)  # a value kept in 1Password is a secret, whatever its key is called
        return field.value


def _supervisor_backend() -> Any:
    """Airflow's own backend that sends a lookup over the parsing child's channel to the DAG processor."""
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    return ExecutionAPISecretsBackend()


def in_supervised_parsing_process() -> bool:
    """True in a DAG-file parsing subprocess (or triggerer runner) that talks to a long-lived supervisor.

    Airflow marks those processes with ``_AIRFLOW_PROCESS_CONTEXT=client`` and gives them a socket
    channel (``SUPERVISOR_COMMS``) to the process that forked them. Task processes are not marked so,
    and ``airflow dags test`` runs in-process (no socket channel): both look 1Password up directly.
    """
    if os.environ.get("_AIRFLOW_PROCESS_CONTEXT") != "client":
        return False
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None) if task_runner is not None else None
    if comms is None:
        return False
    from airflow.sdk.execution_time.comms import CommsDecoder

    return isinstance(comms, CommsDecoder)


def variable_field(item: Item, vault_label: str = "") -> ItemField | None:
    """The field holding a Variable/config value: ``value``; else a password; else the only field.

    Two fields by the same name (in different sections) are an ``AmbiguousFieldError``, never a pick.
    """
    return (
        _field(item, VALUE_FIELDS, vault_label=vault_label)
        or next((f for f in item.fields if f.purpose == "PASSWORD" and f.value), None)
        or (item.fields[0] if len(item.fields) == 1 else None)
    )


def connection_value(item: Item, vault_label: str = "") -> str:
    """Serialize an item as the string Airflow deserializes into a Connection (URI or JSON)."""
    whole = _field(item, WHOLE_CONNECTION_FIELDS, vault_label=vault_label)
    if whole is not None and whole.value:
        return whole.value
    conn: dict[str, Any] = {}
    for attribute, labels in CONNECTION_FIELDS.items():
        found = _field(
            item, labels, purpose={"login": "USERNAME", "password": "PASSWORD"}.get(attribute), vault_label=vault_label
        )
        if found is not None and found.value:
            conn[attribute] = found.value
    if "conn_type" not in conn:
        db_type = _field(item, ("type", "database_type"), vault_label=vault_label)
        if item.category == "DATABASE" and db_type is not None and db_type.value:
            conn["conn_type"] = DATABASE_TYPES.get(db_type.value.lower(), db_type.value.lower())
        else:
            conn["conn_type"] = "generic"
    if "port" in conn:
        try:
            conn["port"] = int(conn["port"])
        except ValueError:
            raise OnePasswordError(f"1Password item {item.title!r}: field 'port' is not a number") from None
    extra: dict[str, Any] = {}
    extra_field = _field(item, ("extra",), vault_label=vault_label)
    if extra_field is not None and extra_field.value:
        try:
            extra.update(json.loads(extra_field.value))
        except ValueError:
            raise OnePasswordError(f"1Password item {item.title!r}: field 'extra' is not valid JSON") from None
    extra.update({f.label: f.value for f in item.fields if fold(f.section_label or "") == "extra" and f.label})
    if extra:
        conn["extra"] = json.dumps(extra)
    return json.dumps(conn)


def mask_connection(item: Item, value: str) -> None:
    """Register the secret parts of a connection built from an item with the masker.

    Secret parts: the password, every extra value (an ``extra`` JSON field, the ``extra`` section),
    a whole ``uri``/``json`` field and the password and extras inside it. Every concealed field is
    registered already: the client's ``get_item`` did it. Host, login, schema, port and type stay
    readable in logs, as Airflow leaves them.
    """
    whole = _field(item, WHOLE_CONNECTION_FIELDS)
    if whole is not None and whole.value:
        mask(whole.value)
    try:
        parsed = json.loads(value)
    except ValueError:  # an Airflow URI
        _mask_uri(value)
        return
    if not isinstance(parsed, dict):
        return
    mask(parsed.get("password"))  # mask() ignores anything that is not a string
    extra = parsed.get("extra")
    if isinstance(extra, str):
        mask(extra)
        try:
            extra = json.loads(extra)
        except ValueError:
            return
    mask_json_leaves(extra)


def _mask_uri(uri: str) -> None:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return
    if parts.password:
        mask(parts.password)
        mask(unquote(parts.password))
    for _, query_value in parse_qsl(parts.query):
        mask(query_value)


def _field(item: Item, names: tuple[str, ...], purpose: str | None = None, vault_label: str = "") -> ItemField | None:
    """The field (outside the 'extra' section) with the purpose, else the first name that labels one.

    A name labelling two fields (in different sections) is an ``AmbiguousFieldError``: which one
    Airflow gets must not depend on field order.
    """
    candidates = [f for f in item.fields if fold(f.section_label or "") != "extra"]
    if purpose:
        by_purpose = next((f for f in candidates if f.purpose == purpose), None)
        if by_purpose is not None:
            return by_purpose
    for name in names:
        matches = [f for f in candidates if fold(f.label) == name or fold(f.id) == name]
        if len(matches) > 1:
            raise AmbiguousFieldError(vault_label, item.title, name, [f.section_label or "" for f in matches])
        if matches:
            return matches[0]
    return None


def _compile(name: str, pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise OnePasswordConfigError(f"OnePasswordBackend: {name} {pattern!r} is not a valid regex: {err}") from None
