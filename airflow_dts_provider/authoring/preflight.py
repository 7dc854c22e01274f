"""``dts-airflow preflight``: does every secret the DAGs declare exist, before they run?

Collects what each task will ask for -- SecretDockerOperator ``secrets=``, ``op://`` references and
``{{ conn.x }}`` / ``{{ var.value.x }}`` in templated fields, ``*_conn_id`` arguments, the Slack
connection of the provider's alerts -- and checks each the way the task will resolve it: 1Password
through the task's ``onepassword`` connection, Connections and Variables through Airflow's secrets
backends. It prints where each secret lives and whether it is there, never a value.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_dts_provider._onepassword import (
    FieldNotFoundError,
    InvalidReferenceError,
    ItemNotFoundError,
    OnePasswordError,
    SecretReference,
    VaultNotFoundError,
    parse_reference,
)

_OP_REFERENCE = re.compile(r"op://[^\s'\"}{]+")


@dataclass(frozen=True)
class SecretUse:
    """One secret one task will ask for."""

    dag_id: str
    task_id: str
    name: str  # env variable, templated field or argument it arrives through
    kind: str  # "1password" | "connection" | "variable"
    key: str  # the reference as declared: op://..., conn id or variable key
    reference: SecretReference | None = None
    onepassword_conn_id: str | None = None
    onepassword_vault: str | None = None


@dataclass(frozen=True)
class Check:
    use: SecretUse
    status: str  # "ok" | "missing" | "error"
    where: str  # vault/item (or the backends searched) -- never a value
    hint: str = ""


def collect(dags: Iterable[Any]) -> list[SecretUse]:
    """Every secret the tasks of these DAGs declare, in DAG and task order."""
    uses: list[SecretUse] = []
    for dag in sorted(dags, key=lambda d: d.dag_id):
        for task in sorted(dag.tasks, key=lambda t: t.task_id):
            uses += list(_task_uses(dag.dag_id, task))
    return list(dict.fromkeys(uses))


def _task_uses(dag_id: str, task: Any) -> Iterator[SecretUse]:
    from airflow_dts_provider.operators.docker import SecretDockerOperator

    if isinstance(task, SecretDockerOperator):
        for name, ref in task.secrets.items():
            yield SecretUse(
                dag_id, task.task_id, name, "1password", str(ref), ref, task.onepassword_conn_id, task.onepassword_vault
            )
    for field in task.template_fields:
        for text in _strings(getattr(task, field, None)):
            for ref_text in _OP_REFERENCE.findall(text):
                try:
                    ref = parse_reference(ref_text)
                except InvalidReferenceError:
                    continue  # the operator that uses it reports malformed references itself
                yield SecretUse(dag_id, task.task_id, field, "1password", ref_text, ref, "onepassword_default")
            if "{{" in text or "{%" in text:
                for kind, key in _template_secrets(text):
                    yield SecretUse(dag_id, task.task_id, field, kind, key)
    for attribute, value in sorted(vars(task).items()):
        # onepassword_conn_id is checked through the 1Password uses (it may fall back to OP_* variables)
        if attribute.endswith("_conn_id") and attribute != "onepassword_conn_id" and isinstance(value, str) and value:
            yield SecretUse(dag_id, task.task_id, attribute, "connection", value)
    for conn_id in _slack_connections(task):
        yield SecretUse(dag_id, task.task_id, "Slack alerts", "connection", conn_id)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _strings(item)


def _template_secrets(text: str) -> Iterator[tuple[str, str]]:
    """("connection", id) and ("variable", key) for ``conn.x`` / ``var.value.x`` / ``var.json.x`` in a template."""
    import jinja2
    from jinja2 import nodes

    try:
        tree = jinja2.Environment(autoescape=False).parse(text)  # noqa: S701 (parsed, never rendered)
    except jinja2.TemplateSyntaxError:
        return
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        target = node.node
        key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if not isinstance(key, str):
            continue
        if isinstance(target, nodes.Name) and target.name == "conn":
            yield "connection", key
        elif (
            isinstance(target, nodes.Getattr)
            and isinstance(target.node, nodes.Name)
            and target.node.name == "var"
            and target.attr in ("value", "json")
        ):
            yield "variable", key


def _slack_connections(task: Any) -> Iterator[str]:
    from airflow_dts_provider.notifications import slack

    for attribute in ("on_failure_callback", "on_success_callback", "on_retry_callback"):
        callbacks = getattr(task, attribute, None) or []
        for callback in callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]:
            if isinstance(callback, slack.SlackNotifier):
                yield callback.slack_conn_id
            elif getattr(callback, "__module__", None) == slack.__name__:
                yield "slack"


# ---------------------------------------------------------------------------------- checking


def check(uses: Sequence[SecretUse]) -> list[Check]:
    """Check each use; 1Password items are fetched once per (connection, vault, item) by the client."""
    results = []
    hooks: dict[tuple[str, str | None], Any] = {}
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # backends log misses with tracebacks; the report says it once
    try:
        for use in uses:
            if use.kind == "1password":
                results.append(_check_onepassword(use, hooks))
            elif use.kind == "connection":
                results.append(_check_connection(use))
            else:
                results.append(_check_variable(use))
    finally:
        logging.disable(previous)
    return results


def _check_onepassword(use: SecretUse, hooks: dict[tuple[str, str | None], Any]) -> Check:
    from airflow_dts_provider.hooks.onepassword import OnePasswordHook

    assert use.reference is not None
    conn_id = use.onepassword_conn_id or OnePasswordHook.default_conn_name
    hook = hooks.setdefault((conn_id, use.onepassword_vault), OnePasswordHook(conn_id, vault=use.onepassword_vault))
    ref = use.reference
    where = _where(ref, hook)
    try:
        hook.get_conn().resolve(ref)  # the value stays in the client's cache, registered with the masker
    except (ItemNotFoundError, FieldNotFoundError, VaultNotFoundError) as err:
        return Check(use, "missing", where, str(err))
    except OnePasswordError as err:
        return Check(use, "error", where, str(err))
    except Exception as err:  # e.g. the onepassword connection itself is missing
        return Check(use, "error", where, f"{type(err).__name__}: {err}")
    return Check(use, "ok", where)


def _where(ref: SecretReference, hook: Any) -> str:
    try:
        default_vault = hook.settings.vault
    except Exception:
        default_vault = None
    return f"{ref.vault or default_vault or '<default vault>'} / {ref.item}"


def _backend_names() -> str:
    from airflow.configuration import ensure_secrets_loaded

    return ", ".join(type(b).__name__ for b in ensure_secrets_loaded())


def _check_connection(use: SecretUse) -> Check:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        Connection.get_connection_from_secrets(use.key)
    except AirflowNotFoundException:
        return Check(use, "missing", f"connection {use.key}", f"not found in: {_backend_names()}")
    except Exception as err:
        return Check(use, "error", f"connection {use.key}", f"{type(err).__name__}: {err}")
    return Check(use, "ok", f"connection {use.key}")


def _check_variable(use: SecretUse) -> Check:
    from airflow.models.variable import Variable

    try:
        found = Variable.get_variable_from_secrets(use.key) is not None
    except Exception as err:
        return Check(use, "error", f"variable {use.key}", f"{type(err).__name__}: {err}")
    if not found:
        return Check(use, "missing", f"variable {use.key}", f"not found in: {_backend_names()}")
    return Check(use, "ok", f"variable {use.key}")


# ---------------------------------------------------------------------------------- report


@dataclass
class PreflightReport:
    checks: list[Check]
    import_errors: dict[str, str]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status != "ok"]

    def as_dict(self, by_item: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "checks": [
                {
                    "dag_id": c.use.dag_id,
                    "task_id": c.use.task_id,
                    "name": c.use.name,
                    "kind": c.use.kind,
                    "reference": c.use.key,
                    "where": c.where,
                    "status": c.status,
                    "hint": c.hint,
                }
                for c in self.checks
            ],
            "import_errors": sorted(self.import_errors),
            "missing": sum(c.status == "missing" for c in self.checks),
            "errors": sum(c.status == "error" for c in self.checks),
        }
        if by_item:
            data["by_item"] = {where: [f"{d}.{t}" for d, t in users] for where, users in self.by_item().items()}
        return data

    def by_item(self) -> dict[str, list[tuple[str, str]]]:
        """1Password item (or connection / variable) -> every (DAG, task) that uses it."""
        users: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for c in self.checks:
            pair = (c.use.dag_id, c.use.task_id)
            if pair not in users[c.where]:
                users[c.where].append(pair)
        return dict(sorted(users.items()))

    def text(self, by_item: bool = False) -> str:
        lines: list[str] = []
        if by_item:
            for where, users in self.by_item().items():
                lines.append(where)
                lines += [f"    {dag_id}.{task_id}" for dag_id, task_id in users]
        else:
            rows = [("DAG", "TASK", "NAME", "REFERENCE", "STATUS")]
            rows += [(c.use.dag_id, c.use.task_id, c.use.name, c.use.key, c.status.upper()) for c in self.checks]
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            for row in rows:
                lines.append("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)))
            for c in self.problems:
                lines.append(f"{c.status.upper()}: {c.use.dag_id}.{c.use.task_id} {c.use.name} ({c.where}): {c.hint}")
        for path in sorted(self.import_errors):
            lines.append(f"not checked: {path} does not import (run dts-airflow lint)")
        missing = sum(c.status == "missing" for c in self.checks)
        errors = sum(c.status == "error" for c in self.checks)
        lines.append(
            f"dts-airflow preflight: {len(self.checks)} secret use(s), {len(self.checks) - missing - errors} ok, "
            f"{missing} missing, {errors} could not be checked"
        )
        return "\n".join(lines)
