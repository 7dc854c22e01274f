"""Where the client connects and with what token: ``ConnectSettings``, from a connection or the environment.

The Connect token is a secret like any value it reads: it is registered with Airflow's secret masker
as soon as settings hold it, so a task that prints its environment or an error that quotes a header
shows ``***``. ``take_token_from_environment`` moves it out of a task process's environment (the
provider's listener calls it when a task starts): the process keeps it for its own lookups, programs
the task starts do not inherit it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_dts_provider._onepassword.errors import OnePasswordConfigError
from airflow_dts_provider._onepassword.masking import mask

#: Environment variables read when no Airflow connection is configured, in order of preference.
HOST_ENV = ("OP_CONNECT_HOST", "OP_CONNECT")
TOKEN_ENV = ("OP_CONNECT_TOKEN", "OP_API_TOKEN")
VAULT_ENV = ("OP_VAULT", "OP_VAULT_ID")


#: A Connect token is a JWT: printable ASCII, no spaces. Anything else (most often a newline copied
#: with it from a file) would end up in an HTTP header -- and in the error text that rejects it.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, repr=False)
class ConnectSettings:
    """Everything that identifies one client; equal settings share one client and one cache.

    ``timeout`` bounds each read; ``total_timeout`` bounds one whole lookup (every request and retry
    it makes, however slowly a server trickles its answer).
    """

    host: str
    token: str
    vault: str | None = None
    cache_ttl: float = 300.0
    timeout: float = 10.0
    total_timeout: float = 30.0
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
            shown_host = without_userinfo(f"http://{self.host}")[len("http://") :]
            raise OnePasswordConfigError(
                f"1Password Connect host {shown_host!r} must be a URL with a scheme, e.g. http://{shown_host}"
            )
        if isinstance(self.verify, str) and not os.path.exists(self.verify):
            raise OnePasswordConfigError(
                f"The CA certificate file or directory {self.verify!r} to verify 1Password Connect with does not exist"
            )
        if not self.token:
            raise OnePasswordConfigError("1Password Connect token is not set")
        if not isinstance(self.token, str) or not _TOKEN_CHARS.fullmatch(self.token):
            raise OnePasswordConfigError(
                "1Password Connect token contains whitespace or control characters (often a trailing newline "
                "copied from a file); remove them from the connection's password or OP_CONNECT_TOKEN"
            )
        mask(self.token)
        for name in ("cache_ttl", "timeout", "total_timeout", "backoff", "max_backoff", "index_refresh_interval"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise OnePasswordConfigError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.timeout <= 0 or self.total_timeout <= 0:
            raise OnePasswordConfigError("timeout and total_timeout must be > 0 seconds")
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 10:
            raise OnePasswordConfigError(f"max_retries must be an integer 0..10, got {self.max_retries!r}")
        if not isinstance(self.max_workers, int) or not 1 <= self.max_workers <= 64:
            raise OnePasswordConfigError(f"max_workers must be an integer 1..64, got {self.max_workers!r}")

    def __repr__(self) -> str:
        return f"ConnectSettings(host={self.display_host!r}, vault={self.vault!r})"

    @property
    def display_host(self) -> str:
        """The host as errors and logs show it: without any ``user:password@`` part."""
        return without_userinfo(self.host)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConnectSettings:
        """Settings from the SDK's variables, then the team's (``OP_CONNECT``, ``OP_API_TOKEN``...)."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        if environ is None and not any(os.environ.get(n) for n in TOKEN_ENV):
            env = {**_TAKEN_FROM_ENVIRONMENT, **os.environ}

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


#: Token variables this process moved out of its environment, still read by ``ConnectSettings.from_env``.
_TAKEN_FROM_ENVIRONMENT: dict[str, str] = {}


def take_token_from_environment() -> list[str]:
    """Move the Connect token variables out of ``os.environ`` into this process; returns their names.

    Lookups in this process (the hook's fallback, the secrets backend) go on finding the token; a
    program the task starts (a BashOperator's shell, a subprocess) no longer inherits it. Each value
    is registered with the masker first, so a copy printed anyway shows ``***``.
    """
    taken = []
    for name in TOKEN_ENV:
        value = os.environ.get(name)
        if value:
            mask(value)
            _TAKEN_FROM_ENVIRONMENT[name] = value
            del os.environ[name]
            taken.append(name)
    return taken


def without_userinfo(url: str) -> str:
    """``http://user:pass@host:8080/x`` -> ``http://host:8080/x`` (for messages; requests keep the URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
