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

import contextvars
import logging
import os
import random
import re
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpcore
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
    shown,
)
from airflow_dts_provider._onepassword.masking import mask
from airflow_dts_provider._onepassword.models import Item, fold
from airflow_dts_provider._onepassword.references import (
    SecretReference,
    looks_like_id,
    parse_secret_mapping,
    parse_secret_spec,
)
from airflow_dts_provider._onepassword.settings import ConnectSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


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
            by_folded.setdefault(fold(title), []).append(item_id)
        ids = frozenset(s["id"] for s in summaries if not s.get("trashed"))
        return cls(vault_id, time.monotonic(), ids, by_title, by_folded)

    def lookup(self, item: str) -> list[str]:
        if item in self.ids:
            return [item]
        return self.by_title.get(item) or self.by_folded.get(fold(item)) or []


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
        verify = _tls_verify(s.verify)
        # The transport owns TLS and the connection pool (httpx ignores a client's verify and limits beside
        # a transport); httpx joins the host and the request path with exactly one slash.
        self._sdk = SdkClient(
            s.host,
            s.token,
            config=ClientConfig(
                timeout=httpx.Timeout(s.timeout),
                transport=_deadline_transport(verify, max_connections=max(16, s.max_workers * 2)),
            ),
        )
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, ...], Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"OnePasswordClient(host={self.settings.display_host!r}, vault={self.settings.vault!r})"

    # ----------------------------------------------------------------- public API
    def resolve(self, reference: Any) -> str:
        """Value of one reference (``op://`` string, team dict or SecretReference)."""
        return self.resolve_many({"reference": reference})["reference"]

    def resolve_many(self, references: Mapping[str, Any]) -> dict[str, str]:
        """Resolve a ``REQUIRED_SECRETS``-shaped mapping: K distinct items cost K fetches, overlapped."""
        parsed = {name: self._with_vault(ref) for name, ref in parse_secret_mapping(references).items()}
        with self._deadline():
            located = self._locate_all(list(parsed.values()))
            items = self._fetch_all(set(located.values()))
        values: dict[str, str] = {}
        for name, ref in parsed.items():
            vault_id, item_id = located[ref]
            found = items[(vault_id, item_id)].find_field(ref.field, ref.section, ref.vault or vault_id)
            value = found.attribute(ref.attribute)
            if value is None:
                raise OnePasswordError(f"{name}: field {shown(ref.field)} of item {shown(ref.item)} has no value")
            values[name] = value
        for name, value in values.items():
            if not mask(value) and value:  # nothing registered: too short for Airflow to mask
                log.warning(
                    "%s (%s) is too short for Airflow to mask (under [logging] min_length_masked_secret characters): "
                    "it will show in clear if printed", name, parsed[name],
                )  # fmt: skip
        return values

    def get_item(self, item: str, vault: str | None = None) -> Item:
        """The full item (by title or id); every field value in it is registered with the masker.

        Every value, whatever its field type: the team keeps API keys in STRING fields of sections, and a
        value handed out is one a task may print. (The secrets backend reads items with ``fetch_item`` and
        registers what it hands to Airflow as secret, leaving hosts and logins readable as Airflow does.)
        """
        found = self.fetch_item(item, vault)
        for value in found.values():
            mask(value)
        return found

    def fetch_item(self, item: str, vault: str | None = None) -> Item:
        """The full item, registering only values secret by type or purpose; the caller registers the rest."""
        ref = self._with_vault(SecretReference(item=item, field="-", vault=vault))
        with self._deadline():
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
        with self._deadline():
            self._request("/heartbeat", "heartbeat", expect=str)

    def check_vault(self, vault: str | None = None) -> str:
        """Check the token can list the vault's items; returns the vault id."""
        name = vault or self.settings.vault
        if not name:
            raise OnePasswordConfigError("no vault given and no default vault configured")
        with self._deadline():
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

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """Bound everything inside (requests, retries, waits) by ``total_timeout``; nested calls keep the outer one."""
        if _DEADLINE.get() is not None:
            yield
            return
        token = _DEADLINE.set(time.monotonic() + self.settings.total_timeout)
        try:
            yield
        finally:
            _DEADLINE.reset(token)

    # ----------------------------------------------------------------- locating items
    def _with_vault(self, spec: Any) -> SecretReference:
        ref = parse_secret_spec(spec)
        if ref.vault:
            return ref
        if not self.settings.vault:
            raise InvalidReferenceError(
                f"{shown(str(ref))} names no vault: add 'opvault' or set the default vault "
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
            if not looks_like_id(vault):  # a name was looked up already
                raise
        # Ids are ids: one that no longer resolves is never retried as a name (a vault named like a
        # vault gone would silently take its place). Say so when a vault has that name.
        named = self._vault_named(vault)
        if named is None:
            raise VaultNotFoundError(vault)
        raise VaultNotFoundError(
            vault,
            hint=f" A vault is named {shown(vault)} (id {named}): a name that looks like a 1Password id (26 "
            "lowercase letters and digits) is read as an id; address that vault by its id or rename it.",
        )

    def _vault_id(self, vault: str) -> str:
        """The id of a vault given by id (kept as it is) or by name (exact, else ignoring case)."""
        if looks_like_id(vault):
            return vault
        vault_id = self._vault_named(vault)
        if vault_id is None:
            raise VaultNotFoundError(vault, [v.get("name") or "" for v in self._vaults()])
        return vault_id

    def _vault_named(self, vault: str) -> str | None:
        vaults = self._vaults()
        for ignore_case in (False, True):
            matches = [
                v["id"]
                for v in vaults
                if (fold(v.get("name") or "") == fold(vault) if ignore_case else v.get("name") == vault)
            ]
            if len(matches) == 1:
                return str(matches[0])
            if len(matches) > 1:
                raise OnePasswordError(f"{len(matches)} vaults are named {shown(vault)}; address the vault by id")
        return None

    def _vaults(self) -> list[dict[str, Any]]:
        return self._cached(
            ("vaults",),
            lambda: _checked_summaries(self._request("/v1/vaults", "vault list"), "vault list", "/v1/vaults"),
        )

    def _index(self, vault_id: str, vault_label: str, refresh: bool = False) -> _VaultIndex:
        path = f"/v1/vaults/{quote(vault_id, safe='')}/items"

        def load() -> _VaultIndex:
            try:
                summaries = self._request(path, "item list")
            except _NotFound:
                raise VaultNotFoundError(vault_label) from None
            return _VaultIndex.build(vault_id, _checked_summaries(summaries, "item list", path))

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
                raw = self._request(path, "item", expect=dict)
            except _NotFound:
                # Deleted since the index was built: forget the index so the next lookup re-lists.
                with self._lock:
                    self._cache.pop(("index", vault_id), None)
                raise ItemNotFoundError(vault_id, item_id) from None
            try:
                return Item.from_json(raw)
            except (ValueError, TypeError, AttributeError, KeyError) as err:
                raise OnePasswordError(
                    f"1Password Connect at {self.settings.display_host} answered the item request ({path}) with an "
                    f"item this client cannot read ({type(err).__name__})"
                ) from None

        return self._cached(("item", vault_id, item_id), load)

    def _parallel(self, fn: Callable[[Any], T], args: list[Any]) -> list[T]:
        if len(args) <= 1:
            return [fn(a) for a in args]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="onepassword")
            pool = self._pool
        # Each job runs in a copy of this context, so the caller's deadline bounds it too.
        futures = [pool.submit(contextvars.copy_context().run, fn, a) for a in args]
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
    def _request(self, path: str, kind: str, expect: type = list) -> Any:
        """GET ``path``; JSON of the ``expect`` type (``str``: the text). Retries what waiting can fix."""
        s = self.settings
        host = s.display_host
        cause = "no attempt made"
        retry_after: float | None = None
        attempts = 0
        for attempt in range(s.max_retries + 1):
            if attempt:
                delay = self._delay(attempt, retry_after)
                if _remaining() <= delay:
                    break
                time.sleep(delay)
                retry_after = None
            if _remaining() <= 0:
                break
            attempts += 1
            self.stats.count(kind)
            try:
                response = _get_capped(self._sdk.session, path)
            except _UnreadableBody as err:  # a server's answer, not a hiccup: asking again gets the same
                raise OnePasswordError(f"1Password Connect at {host} answered the {kind} ({path}) {err}") from None
            except httpx.TimeoutException:
                if _remaining() > 0 or attempts == 1:
                    cause = f"timed out after {min(s.timeout, s.total_timeout):g}s"
                # else the total deadline cut this attempt short: the previous attempt's answer says more
                continue
            except httpx.LocalProtocolError:
                # The request could not even be written (an illegal header value): waiting will not fix it,
                # and httpx's text quotes the offending header -- the token.
                raise OnePasswordConfigError(
                    f"the request to 1Password Connect at {host} for the {kind} could not be sent: the host or "
                    "token is not valid in an HTTP request; check the connection's host and password"
                ) from None
            except httpx.TransportError as err:
                cause = f"{type(err).__name__} ({_describe_transport_error(err, s)})"
                continue
            status = response.status_code
            if status == 200:
                if expect is str:
                    return response.text
                try:
                    body = response.json()
                except ValueError:
                    cause = "HTTP 200 with a body that is not JSON"
                    continue
                if not isinstance(body, expect):
                    raise OnePasswordError(
                        f"1Password Connect at {host} answered the {kind} ({path}) with JSON of an unexpected "
                        f"shape ({_json_kind(body)}, expected {_json_kind(expect())})"
                    )
                return body
            message = _error_message(response)
            if status in (401, 403):
                raise OnePasswordUnauthorizedError(
                    f"1Password Connect at {host} refused the token for the {kind} "
                    f"(HTTP {status}: {message}); check the token and that it can read this vault"
                )
            if status == 404:
                raise _NotFound
            if status == 429 or status >= 500:
                cause = f"HTTP {status}: {message}"
                retry_after = _retry_after(response)
                continue
            raise OnePasswordError(f"1Password Connect at {host} answered HTTP {status} for the {kind}: {message}")
        if attempts <= s.max_retries or _remaining() <= 0:
            raise OnePasswordUnavailableError(
                f"1Password Connect at {host} gave no answer for the {kind} within the {s.total_timeout:g}s total "
                f"deadline (total_timeout; last problem: {cause})"
            )
        raise OnePasswordUnavailableError(
            f"1Password Connect at {host} is unavailable for the {kind} after {s.max_retries + 1} attempt(s): {cause}"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        backoff = min(s.max_backoff, s.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after is not None:
            return min(s.max_backoff, max(backoff, retry_after))
        return backoff


#: The most a Connect answer may hold once decoded: far above any real item or item list (a vault of
#: 30,000 items lists in about 15 MiB), far below what a small gzip "bomb" expands to.
MAX_RESPONSE_BYTES = 32 * 2**20


class _UnreadableBody(Exception):
    """An answer this client will not read (too large decoded, an encoding it does not decode); the text
    completes "answered the <kind> (<path>) ..."."""


def _get_capped(session: httpx.Client, path: str, limit: int = MAX_RESPONSE_BYTES) -> httpx.Response:
    """GET ``path``, decoding the body ourselves a bounded piece at a time and stopping past ``limit`` bytes.

    httpx decodes each network chunk whole, and deflate expands about 1,000 to 1: one 64 KiB chunk
    of a gzip "bomb" would be 64 MiB before any check could look at it.
    """
    with session.stream("GET", path) as streamed:
        encoding = streamed.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            raise _UnreadableBody(f"with Content-Encoding {encoding!r}, which this client does not decode")
        decoder = None if encoding in ("identity", "") else zlib.decompressobj(31 if "gzip" in encoding else 15)
        chunks: list[bytes] = []
        size = 0
        for raw in streamed.iter_raw(64 * 1024):
            pending = raw
            while pending:
                if decoder is None:
                    piece, pending = pending, b""
                else:
                    piece = decoder.decompress(pending, limit - size + 1)
                    pending = decoder.unconsumed_tail
                size += len(piece)
                if size > limit:
                    raise _UnreadableBody(
                        f"with more than {limit // 2**20} MiB (decoded); no item or list is that large, so it was "
                        "not read further"
                    )
                chunks.append(piece)
        if decoder is not None:
            chunks.append(decoder.flush())
    # The body is decoded already: the copy must not say it is compressed.
    headers = [(k, v) for k, v in streamed.headers.items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(streamed.status_code, headers=headers, content=b"".join(chunks), request=streamed.request)


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


def _describe_transport_error(err: httpx.TransportError, settings: ConnectSettings) -> str:
    """Transport error text, without anything that could be a credential (it can quote the request)."""
    text = str(err) or type(err).__name__
    text = text.replace(settings.token, "***")
    text = re.sub(r"(?i)(bearer|basic)\s+\S+", r"\1 ***", text)
    text = re.sub(r"//[^/@\s]*@", "//", text)  # user:password@ in a quoted URL
    return text[:160]


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _checked_summaries(body: list[Any], kind: str, path: str) -> list[dict[str, Any]]:
    """A vault or item list must be objects with a string id; anything else is a server we cannot trust."""
    for entry in body:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise OnePasswordError(
                f"1Password Connect answered the {kind} ({path}) with an entry that has no id ({_json_kind(entry)})"
            )
    return body


# ------------------------------------------------------------------------------------ total deadline
#: monotonic time by which the current lookup must end (None outside a lookup).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("onepassword_deadline", default=None)


def _remaining() -> float:
    """Seconds left of the current lookup: every request runs inside ``OnePasswordClient._deadline``."""
    deadline = _DEADLINE.get()
    if deadline is None:
        raise RuntimeError("a 1Password Connect request was sent outside a lookup's total deadline")
    return deadline - time.monotonic()


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout for one network operation: never past the lookup's deadline."""
    remaining = _remaining()
    if remaining <= 0:
        raise error("the lookup's total deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the lookup's deadline.

    httpx's timeouts bound each read; a server that trickles a byte at a time never trips them.
    """

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with each connection bounded by the lookup's deadline.

    Only ``connect_tcp`` is overridden: the transport has no ``uds`` (no unix sockets) and no connect
    retries (httpcore never calls ``sleep``), so the base class's versions of those are never reached.
    """

    def __init__(self, backend: httpcore.NetworkBackend):
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, bounded, local_address, socket_options))


def _tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """``verify`` as httpx 0.28 takes it: a CA file or directory path becomes an SSL context."""
    if not isinstance(verify, str):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _deadline_transport(verify: bool | ssl.SSLContext, max_connections: int) -> httpx.HTTPTransport:
    """httpx's transport with the deadline-bounded network backend under its connection pool.

    httpx has no public way to hand its pool a network backend, so it is set on the pool httpx built
    (``tests/test_client.py`` fails if a new httpx moves it).
    """
    transport = httpx.HTTPTransport(retries=0, verify=verify, limits=httpx.Limits(max_connections=max_connections))
    pool = transport._pool
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)
    else:  # pragma: no cover - a future httpcore; retries still stop at the deadline
        log.warning("httpcore changed: 1Password lookups are bounded by total_timeout only between requests")
    return transport


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
