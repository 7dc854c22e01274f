"""The one 1Password Connect client the hook, secrets backend and operator share.

It keeps a per-vault title -> id index (one ``GET /v1/vaults/{vault}/items`` per vault and TTL),
fetches full items by id, concurrently and at most once per item and TTL, retries transient
failures with backoff, and registers every value it hands out with Airflow's secret masker.
The SDK (``onepasswordconnectsdk``) is the HTTP transport (session, auth headers, base URL,
TLS options). Its title lookups are not used (they do not encode titles and cost two or more
requests per lookup), nor its models (they reject enum values a newer Connect may add): items
are read from JSON into our own value-hiding dataclasses.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from onepasswordconnectsdk.client import Client as SdkClient
from onepasswordconnectsdk.config import ClientConfig

from airflow_dts_provider._onepassword.errors import (
    AmbiguousItemError,
    InvalidReferenceError,
    ItemNotFoundError,
    OnePasswordConfigError,
    OnePasswordError,
    OnePasswordUnauthorizedError,
    OnePasswordUnavailableError,
    VaultNotFoundError,
)
from airflow_dts_provider._onepassword.models import Item
from airflow_dts_provider._onepassword.references import (
    SecretReference,
    looks_like_id,
    parse_secret_mapping,
    parse_secret_spec,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variables read when no Airflow connection is configured, in order of preference.
HOST_ENV = ("OP_CONNECT_HOST", "OP_CONNECT")
TOKEN_ENV = ("OP_CONNECT_TOKEN", "OP_API_TOKEN")
VAULT_ENV = ("OP_VAULT", "OP_VAULT_ID")


@dataclass(frozen=True)
class ConnectSettings:
    """Everything that identifies one client; equal settings share one client and one cache."""

    host: str
    token: str = field(repr=False)
    vault: str | None = None
    cache_ttl: float = 300.0
    timeout: float = 10.0
    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 4.0
    index_refresh_interval: float = 10.0
    max_workers: int = 8
    verify: bool | str = True

    def __post_init__(self) -> None:
        if not self.host or not self.host.strip():
            raise OnePasswordConfigError("1Password Connect host is not set (e.g. http://op-connect:8080)")
        if "://" not in self.host:
            raise OnePasswordConfigError(
                f"1Password Connect host {self.host!r} must be a URL with a scheme, e.g. http://{self.host}"
            )
        if not self.token:
            raise OnePasswordConfigError("1Password Connect token is not set")
        for name in ("cache_ttl", "timeout", "backoff", "max_backoff", "index_refresh_interval"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise OnePasswordConfigError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.timeout <= 0:
            raise OnePasswordConfigError("timeout must be > 0 seconds")
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 10:
            raise OnePasswordConfigError(f"max_retries must be an integer 0..10, got {self.max_retries!r}")
        if not isinstance(self.max_workers, int) or not 1 <= self.max_workers <= 64:
            raise OnePasswordConfigError(f"max_workers must be an integer 1..64, got {self.max_workers!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConnectSettings:
        """Settings from the SDK's variables, then the team's (``OP_CONNECT``, ``OP_API_TOKEN``...)."""
        env = os.environ if environ is None else environ

        def first(names: Iterable[str]) -> str | None:
            return next((env[n] for n in names if env.get(n)), None)

        values: dict[str, Any] = {
            "host": first(HOST_ENV),
            "token": first(TOKEN_ENV),
            "vault": first(VAULT_ENV),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["host"]:
            raise OnePasswordConfigError(
                "1Password Connect host is not set: configure the connection or set OP_CONNECT_HOST (or OP_CONNECT)"
            )
        if not values["token"]:
            raise OnePasswordConfigError(
                "1Password Connect token is not set: configure the connection or set OP_CONNECT_TOKEN (or OP_API_TOKEN)"
            )
        return cls(**values)


@dataclass
class ClientStats:
    """Requests this client sent (attempts, including retries), by kind."""

    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.requests += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


@dataclass(frozen=True)
class _VaultIndex:
    vault_id: str
    built_at: float
    ids: frozenset[str]
    by_title: dict[str, list[str]]
    by_folded: dict[str, list[str]]

    @classmethod
    def build(cls, vault_id: str, summaries: list[dict[str, Any]]) -> _VaultIndex:
        by_title: dict[str, list[str]] = {}
        by_folded: dict[str, list[str]] = {}
        for s in summaries:
            if s.get("trashed"):
                continue
            title, item_id = s.get("title") or "", s["id"]
            by_title.setdefault(title, []).append(item_id)
            by_folded.setdefault(title.casefold(), []).append(item_id)
        ids = frozenset(s["id"] for s in summaries if not s.get("trashed"))
        return cls(vault_id, time.monotonic(), ids, by_title, by_folded)

    def lookup(self, item: str) -> list[str]:
        if item in self.ids:
            return [item]
        return self.by_title.get(item) or self.by_folded.get(item.casefold()) or []


class _NotFound(Exception):
    """Connect answered 404; callers turn it into the right OnePasswordError."""


@dataclass
class _Entry:
    value: Any
    expires: float


class OnePasswordClient:
    """Thread-safe, caching client for one Connect server and token."""

    def __init__(self, settings: ConnectSettings):
        self.settings = settings
        self.stats = ClientStats()
        self._cache: dict[tuple[str, ...], _Entry] = {}
        self._start_process_state()
        _live_clients.add(self)

    def _start_process_state(self) -> None:
        """Locks, threads and sockets are per process: (re)made at start and in a forked child.

        Airflow forks a lot (DAG parsing, LocalExecutor workers, task supervisors). A child keeps the
        parent's cached items but must not reuse its lock state, its pool threads or its connections.
        """
        s = self.settings
        self._sdk = SdkClient(
            s.host.rstrip("/"),
            s.token,
            config=ClientConfig(
                timeout=httpx.Timeout(s.timeout),
                verify=s.verify,
                transport=httpx.HTTPTransport(retries=0, verify=s.verify),
                limits=httpx.Limits(max_connections=max(16, s.max_workers * 2)),
            ),
        )
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, ...], Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"OnePasswordClient(host={self.settings.host!r}, vault={self.settings.vault!r})"

    # ----------------------------------------------------------------- public API
    def resolve(self, reference: Any) -> str:
        """Value of one reference (``op://`` string, team dict or SecretReference)."""
        return self.resolve_many({"reference": reference})["reference"]

    def resolve_many(self, references: Mapping[str, Any]) -> dict[str, str]:
        """Resolve a ``REQUIRED_SECRETS``-shaped mapping: K distinct items cost K fetches, overlapped."""
        parsed = {name: self._with_vault(ref) for name, ref in parse_secret_mapping(references).items()}
        located = self._locate_all(list(parsed.values()))
        items = self._fetch_all(set(located.values()))
        values: dict[str, str] = {}
        for name, ref in parsed.items():
            vault_id, item_id = located[ref]
            found = items[(vault_id, item_id)].find_field(ref.field, ref.section, ref.vault or vault_id)
            value = found.attribute(ref.attribute)
            if value is None:
                raise OnePasswordError(f"{name}: field {ref.field!r} of item {ref.item!r} has no value")
            values[name] = value
        for value in values.values():
            mask(value)
        return values

    def get_item(self, item: str, vault: str | None = None) -> Item:
        """The full item (by title or id); its secret values are registered with the masker."""
        ref = self._with_vault(SecretReference(item=item, field="-", vault=vault))
        key = self._locate_all([ref])[ref]
        found = self._fetch_all({key})[key]
        for value in found.secret_values():
            mask(value)
        return found

    def get_field(self, item: str, field_path: str, vault: str | None = None) -> str:
        """One field, addressed the team's way: ``"section.field"``, ``".field"`` or ``"field"``."""
        spec: dict[str, str] = {"opitem": item, "opfield": field_path}
        if vault:
            spec["opvault"] = vault
        return self.resolve(spec)

    def heartbeat(self) -> None:
        """Raise unless the Connect server answers its heartbeat."""
        self._request("/heartbeat", "heartbeat", expect_json=False)

    def check_vault(self, vault: str | None = None) -> str:
        """Check the token can list the vault's items; returns the vault id."""
        name = vault or self.settings.vault
        if not name:
            raise OnePasswordConfigError("no vault given and no default vault configured")
        vault_id = self._vault_id(name)
        self._index(vault_id, name)
        return vault_id

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._sdk.session.close()

    # ----------------------------------------------------------------- locating items
    def _with_vault(self, spec: Any) -> SecretReference:
        ref = parse_secret_spec(spec)
        if ref.vault:
            return ref
        if not self.settings.vault:
            raise InvalidReferenceError(
                f"{ref} names no vault: add 'opvault' or set the default vault "
                "(connection extra 'vault', OP_VAULT or OP_VAULT_ID)"
            )
        return ref.with_vault(self.settings.vault)

    def _locate_all(self, refs: list[SecretReference]) -> dict[SecretReference, tuple[str, str]]:
        """Map each reference to (vault id, item id); one index list per distinct vault, in parallel."""
        vaults = sorted({r.vault for r in refs if r.vault})
        indexed = dict(zip(vaults, self._parallel(self._vault_and_index, vaults), strict=True))
        located: dict[SecretReference, tuple[str, str]] = {}
        for ref in refs:
            assert ref.vault is not None
            vault_id, index = indexed[ref.vault]
            located[ref] = (vault_id, self._item_id(index, ref.item, ref.vault))
        return located

    def _vault_and_index(self, vault: str) -> tuple[str, _VaultIndex]:
        vault_id = self._vault_id(vault)
        try:
            return vault_id, self._index(vault_id, vault)
        except VaultNotFoundError:
            if vault_id != vault or not looks_like_id(vault):
                raise
        # A 26-character lowercase vault *name*: not an id after all, look it up by name.
        vault_id = self._vault_id(vault, by_name=True)
        return vault_id, self._index(vault_id, vault)

    def _vault_id(self, vault: str, by_name: bool = False) -> str:
        if looks_like_id(vault) and not by_name:
            return vault
        vaults = self._cached(("vaults",), lambda: self._request("/v1/vaults", "vault list"))
        for fold in (False, True):
            matches = [
                v["id"]
                for v in vaults
                if (v.get("name") or "").casefold() == vault.casefold()
                if fold or v.get("name") == vault
            ]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise OnePasswordError(f"{len(matches)} vaults are named {vault!r}; address the vault by id")
        raise VaultNotFoundError(vault, [v.get("name") or "" for v in vaults])

    def _index(self, vault_id: str, vault_label: str, refresh: bool = False) -> _VaultIndex:
        def load() -> _VaultIndex:
            try:
                summaries = self._request(f"/v1/vaults/{quote(vault_id, safe='')}/items", "item list")
            except _NotFound:
                raise VaultNotFoundError(vault_label) from None
            return _VaultIndex.build(vault_id, summaries)

        return self._cached(("index", vault_id), load, refresh=refresh)

    def _item_id(self, index: _VaultIndex, item: str, vault_label: str) -> str:
        ids = index.lookup(item)
        if not ids and time.monotonic() - index.built_at >= self.settings.index_refresh_interval:
            # The item may be new: refresh the index, at most once per refresh interval.
            index = self._index(index.vault_id, vault_label, refresh=True)
            ids = index.lookup(item)
        if not ids:
            raise ItemNotFoundError(vault_label, item, index.by_title)
        if len(ids) > 1:
            raise AmbiguousItemError(vault_label, item, ids)
        return ids[0]

    # ----------------------------------------------------------------- fetching items
    def _fetch_all(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        ordered = sorted(keys)
        return dict(zip(ordered, self._parallel(lambda k: self._item(*k), ordered), strict=True))

    def _item(self, vault_id: str, item_id: str) -> Item:
        def load() -> Item:
            path = f"/v1/vaults/{quote(vault_id, safe='')}/items/{quote(item_id, safe='')}"
            try:
                raw = self._request(path, "item")
            except _NotFound:
                # Deleted since the index was built: forget the index so the next lookup re-lists.
                with self._lock:
                    self._cache.pop(("index", vault_id), None)
                raise ItemNotFoundError(vault_id, item_id) from None
            try:
                return Item.from_json(raw)
            except (ValueError, TypeError, AttributeError, KeyError) as err:
                raise OnePasswordError(
                    f"1Password Connect returned an item {item_id} this client cannot read ({type(err).__name__})"
                ) from None

        return self._cached(("item", vault_id, item_id), load)

    def _parallel(self, fn: Callable[[Any], T], args: list[Any]) -> list[T]:
        if len(args) <= 1:
            return [fn(a) for a in args]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="onepassword")
            pool = self._pool
        futures = [pool.submit(fn, a) for a in args]
        return [f.result() for f in futures]

    # ----------------------------------------------------------------- cache with single flight
    def _cached(self, key: tuple[str, ...], load: Callable[[], T], refresh: bool = False) -> T:
        """Return the cached value, or load it once however many threads ask at the same time."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and not refresh and entry.expires > time.monotonic():
                return entry.value
            pending = self._inflight.get(key)
            owner = pending is None
            if pending is None:
                pending = self._inflight[key] = Future()
        if not owner:
            return pending.result()
        try:
            value = load()
        except BaseException as err:
            with self._lock:
                del self._inflight[key]
            pending.set_exception(err)
            raise
        with self._lock:
            if self.settings.cache_ttl > 0:
                self._cache[key] = _Entry(value, time.monotonic() + self.settings.cache_ttl)
            del self._inflight[key]
        pending.set_result(value)
        return value

    # ----------------------------------------------------------------- HTTP with bounded retries
    def _request(self, path: str, kind: str, expect_json: bool = True) -> Any:
        s = self.settings
        cause = "no attempt made"
        retry_after: float | None = None
        for attempt in range(s.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                retry_after = None
            self.stats.count(kind)
            try:
                response = self._sdk.build_request("GET", path)
            except httpx.TimeoutException:
                cause = f"timed out after {s.timeout:g}s"
                continue
            except httpx.TransportError as err:
                cause = f"{type(err).__name__} ({_describe_transport_error(err)})"
                continue
            status = response.status_code
            if status == 200:
                if not expect_json:
                    return response.text
                try:
                    return response.json()
                except ValueError:
                    cause = "HTTP 200 with a body that is not JSON"
                    continue
            message = _error_message(response)
            if status in (401, 403):
                raise OnePasswordUnauthorizedError(
                    f"1Password Connect at {s.host} refused the token for the {kind} "
                    f"(HTTP {status}: {message}); check the token and that it can read this vault"
                )
            if status == 404:
                raise _NotFound(message)
            if status == 429 or status >= 500:
                cause = f"HTTP {status}: {message}"
                retry_after = _retry_after(response)
                continue
            raise OnePasswordError(f"1Password Connect at {s.host} answered HTTP {status} for the {kind}: {message}")
        raise OnePasswordUnavailableError(
            f"1Password Connect at {s.host} is unavailable for the {kind} after {s.max_retries + 1} attempt(s): {cause}"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        backoff = min(s.max_backoff, s.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after is not None:
            return min(s.max_backoff, max(backoff, retry_after))
        return backoff


def _error_message(response: httpx.Response) -> str:
    """Connect's ``message`` if the body is JSON, else a generic text; never the raw body."""
    try:
        body = response.json()
    except ValueError:
        return f"non-JSON {response.headers.get('content-type', 'body')}"
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:200] if message else "no message"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _describe_transport_error(err: httpx.TransportError) -> str:
    text = str(err) or type(err).__name__
    return text[:160]


def mask(value: str) -> None:
    """Register a value with Airflow's secret maskers.

    The task SDK's masker covers task logs (and tells the supervisor); server processes (scheduler,
    API server, DAG processor) filter their own logs through the core masker, so register there too.
    """
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(value)
    except Exception:
        log.warning("Could not register a 1Password value with the task SDK secret masker")
    try:
        from airflow._shared.secrets_masker import mask_secret as core_mask_secret
    except ImportError:  # a worker with only the task SDK installed
        return
    try:
        core_mask_secret(value)
    except Exception:
        log.warning("Could not register a 1Password value with the core secret masker")


_shared: dict[ConnectSettings, OnePasswordClient] = {}
_shared_lock = threading.Lock()
_live_clients: weakref.WeakSet[OnePasswordClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    for client in list(_live_clients):
        client._start_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


def shared_client(settings: ConnectSettings) -> OnePasswordClient:
    """One client (and so one cache) per process for equal settings: hook, backend and operator share it."""
    with _shared_lock:
        client = _shared.get(settings)
        if client is None:
            client = _shared[settings] = OnePasswordClient(settings)
        return client
