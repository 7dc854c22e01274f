"""SecretDockerOperator: DockerOperator whose 1Password secrets reach the container and nothing else.

The team's ``REQUIRED_SECRETS`` dicts (or ``op://`` references) are validated when the DAG is parsed
and resolved only inside ``execute``, straight into ``private_environment``: never XCom, never a
rendered template field, never a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowException
from docker.errors import APIError, DockerException

from airflow_dts_provider._onepassword import (
    InvalidReferenceError,
    SecretReference,
    parse_secret_mapping,
    scrub_parts,
    scrub_text,
    shown,
)
from airflow_dts_provider.hooks.onepassword import OnePasswordHook
from airflow_dts_provider.operators.exceptions import DockerEngineUnreachableError, ImagePullError

if TYPE_CHECKING:
    from airflow.sdk import Context

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Registry answers that will not change by waiting: wrong credentials, missing image or tag.
PERMANENT = re.compile(
    r"denied|unauthori[sz]ed|authentication required|forbidden|manifest unknown|name unknown|not found"
    r"|invalid reference|\b40[134]\b",
    re.IGNORECASE,
)
#: Registry failures worth waiting out, or running the local image for (checked after PERMANENT).
TRANSIENT = re.compile(
    r"connection refused|connection reset|timed? ?out|no such host|name resolution|temporary failure"
    r"|network is unreachable|\beof\b|tls handshake|\b5\d\d\b|\b429\b|internal server error|bad gateway"
    r"|service unavailable|too many requests",
    re.IGNORECASE,
)


class SecretDockerOperator(DockerOperator):
    """
    Run a Docker container with environment variables taken from 1Password at run time.

    :param secrets: ``{"ENV_NAME": {"opitem": "Item", "opfield": "section.field", "opvault": "..."}}``
        (the team's ``REQUIRED_SECRETS``, verbatim) and/or ``{"ENV_NAME": "op://vault/item/[section/]field"}``.
        Checked when the DAG is parsed; resolved in ``execute`` into ``private_environment``.
        A name may not also appear in ``environment`` or ``private_environment``.
    :param onepassword_conn_id: the ``onepassword`` connection (default ``onepassword_default``, which
        falls back to the ``OP_*`` environment variables).
    :param onepassword_vault: default vault for entries without ``opvault`` (else the connection's).
    :param pull_fallback: when logging in to the registry or pulling fails with a transient error
        (connection refused/reset, timeout, DNS, 5xx), log a warning and run the local copy of the
        image. Permanent errors (denied, unknown manifest) and a missing local image still fail.
    :param auto_remove: DockerOperator's; defaults to ``"force"`` here when there are secrets: an
        exited container keeps its environment (``docker inspect`` shows it), so none that received
        secrets outlives its task, even one stopped by a kill. ``"never"`` keeps the container for
        debugging (``"success"`` keeps one stopped by a kill); the task log then says it holds secrets.

    All other arguments are DockerOperator's. Unlike DockerOperator, a failed pull is an error (it is
    not silently followed by running a stale local image) unless ``pull_fallback`` allows it, and the
    value pushed to XCom (the container's last output line, when ``do_xcom_push``) has every secret
    value replaced by ``***``.
    """

    def __init__(
        self,
        *,
        secrets: Mapping[str, Any] | None = None,
        onepassword_conn_id: str = OnePasswordHook.default_conn_name,
        onepassword_vault: str | None = None,
        pull_fallback: bool = False,
        **kwargs: Any,
    ) -> None:
        if secrets and "auto_remove" not in kwargs:
            kwargs["auto_remove"] = "force"
        super().__init__(**kwargs)
        self.secrets: dict[str, SecretReference] = validate_secrets(
            secrets or {}, environment=self.environment, private_environment=self._private_environment
        )
        self.onepassword_conn_id = onepassword_conn_id
        self.onepassword_vault = onepassword_vault
        self.pull_fallback = pull_fallback

    def execute(self, context: Context) -> list[str] | str | None:
        values = self._resolve_secrets()
        base_private = dict(self._private_environment)
        self._private_environment = {**base_private, **values}
        try:
            self._normalize_mounts()
            if self.force_pull or not self._local_image_exists():
                self._pull_image()
            force_pull, self.force_pull = self.force_pull, False  # pulled (or fell back) above
            try:
                result = super().execute(context)
            finally:
                self.force_pull = force_pull
            return scrub(result, values.values())
        finally:
            self._private_environment = base_private  # values live no longer than the task needs them

    # ------------------------------------------------------------------ secrets
    def _resolve_secrets(self) -> dict[str, str]:
        if not self.secrets:
            return {}
        hook = OnePasswordHook(self.onepassword_conn_id, vault=self.onepassword_vault)
        self.log.info(
            "Resolving %d secret(s) from 1Password for: %s", len(self.secrets), ", ".join(sorted(self.secrets))
        )
        if self.auto_remove != "force":
            # providers-docker removes an exited container with "success" too; only "force" also removes
            # one stopped by on_kill (task killed or timed out).
            kept = "the container is kept" if self.auto_remove == "never" else "a container stopped by a kill is kept"
            self.log.warning(
                "auto_remove=%r: %s and holds the secrets %s in its environment (docker inspect shows them); "
                "remove it when done, or drop auto_remove to have it always removed",
                self.auto_remove, kept, ", ".join(sorted(self.secrets)),
            )  # fmt: skip
        return hook.resolve_many(self.secrets)

    # ------------------------------------------------------------------ registry and pull
    @property
    def cli(self) -> Any:
        try:
            return self._api_client()
        except (APIError, DockerException) as err:
            if not self.docker_conn_id or not self.pull_fallback or not is_transient(err):
                raise ImagePullError(
                    f"Docker registry login for {self.image!r} failed: {describe(err)}", transient=is_transient(err)
                ) from err
            self.log.warning(
                "Docker registry login failed with a transient error (%s); continuing without login "
                "(pull_fallback=True)", describe(err),
            )  # fmt: skip
            self.docker_conn_id = None  # the same hook settings, minus the registry login
            self.__dict__.pop("hook", None)
            return self._api_client()

    def _api_client(self) -> Any:
        try:
            return self.hook.api_client
        except (APIError, DockerException):
            raise  # the engine answered: a registry login problem, handled by the caller
        except AirflowException as err:  # DockerHook: no engine answered a ping at any URL
            raise DockerEngineUnreachableError(
                f"No Docker engine answers at {self.docker_url}: start one there or point docker_url (the "
                "examples read DOCKER_HOST) at one that runs. In this repository, scripts/dev starts Podman's "
                "Docker API for you and scripts/podman-setup starts it alone and prints its URL."
            ) from err

    def _local_image_exists(self) -> bool:
        return bool(self.cli.images(name=self.image))

    def _pull_image(self) -> None:
        try:
            self.log.info("Pulling docker image %s", self.image)
            for output in self.cli.pull(self.image, stream=True, decode=True):
                if isinstance(output, dict) and output.get("error"):
                    raise ImagePullError(str(output["error"]), transient=is_transient(output["error"]))
                if isinstance(output, dict) and "status" in output and "id" not in output:
                    self.log.info("%s", output["status"])
        except (APIError, DockerException) as err:
            failure = ImagePullError(describe(err), transient=is_transient(err))
        except ImagePullError as err:
            failure = err
        else:
            return
        kind = "transient" if failure.transient else "permanent"
        if not self.pull_fallback or not failure.transient:
            raise ImagePullError(
                f"Pulling {self.image!r} failed ({kind} error): {failure}", transient=failure.transient
            ) from failure
        if not self._local_image_exists():
            raise ImagePullError(
                f"Pulling {self.image!r} failed ({kind} error) and there is no local copy to fall back to: {failure}",
                transient=True,
            ) from failure
        self.log.warning("Pulling %s failed (%s); running the local copy (pull_fallback=True)", self.image, failure)


def validate_secrets(
    secrets: Mapping[str, Any], environment: Any = None, private_environment: Mapping[str, Any] | None = None
) -> dict[str, SecretReference]:
    """Check a secrets mapping at DAG parse time; errors name the environment variable."""
    if not isinstance(secrets, Mapping):
        raise InvalidReferenceError(f"secrets must be a dict of ENV_NAME -> reference, got {type(secrets).__name__}")
    for name in secrets:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidReferenceError(
                f"secrets key {shown(name)} is not a valid environment variable name (letters, digits, _; "
                "not a digit first)"
            )
        if isinstance(environment, Mapping) and name in environment:
            raise InvalidReferenceError(
                f"{name} is set in both environment and secrets; keep it in one (secrets never reach rendered fields)"
            )
        if private_environment and name in private_environment:
            raise InvalidReferenceError(f"{name} is set in both private_environment and secrets; keep it in one")
    return parse_secret_mapping(secrets)


def is_transient(error: object) -> bool:
    """Classify a registry error by its text (the Docker API reports pull failures as text only)."""
    text = describe(error)
    return not PERMANENT.search(text) and bool(TRANSIENT.search(text))


def describe(error: object) -> str:
    """The engine's explanation: its own HTTP status (500 for any registry failure) says nothing."""
    if isinstance(error, APIError):
        return str(error.explanation or error)
    return str(error)


def scrub(result: Any, values: Any) -> Any:
    """Replace secret values in what DockerOperator returns (it becomes XCom) with ``***``.

    The same rule as log masking: each value and each of its lines, if long enough to mask.
    """
    parts = scrub_parts(v for v in values if v)
    return _scrub(result, parts) if parts else result


def _scrub(result: Any, parts: list[str]) -> Any:
    """Strings and bytes anywhere in `result`: log lines, or whatever ``retrieve_output`` unpickled."""
    if isinstance(result, bytes):
        result = result.decode("utf-8", "replace")
    if isinstance(result, str):
        return scrub_text(result, parts)
    if isinstance(result, dict):
        return {_scrub(key, parts): _scrub(value, parts) for key, value in result.items()}
    for kind in (list, tuple, set, frozenset):  # the plain kind: a namedtuple's constructor takes fields
        if isinstance(result, kind):
            return kind(_scrub(item, parts) for item in result)
    return result
