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
    parse_secret_mapping,
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
    """Every secret the tasks of these DAGs declare, in DAG and task order.

    Besides what a task declares itself, a task that fetches a secrets dict of its own (the Airflow 2
    ``get_env_vars`` task: the dict in its arguments or read from its module) passes those secrets
    on through XCom, so every task reading its result (and theirs, in turn) uses them too.
    """
    uses: list[SecretUse] = []
    for dag in sorted(dags, key=lambda d: d.dag_id):
        tasks = sorted(dag.tasks, key=lambda t: t.task_id)
        fetched = {task.task_id: _fetched_secrets(task) for task in tasks}
        inherited = _through_xcom(tasks, {t: refs for t, refs in fetched.items() if refs})
        for task in tasks:
            uses += list(_task_uses(dag.dag_id, task))
            passed_on = [
                (f"{name} (XCom of {source})", ref)
                for source, refs in inherited.get(task.task_id, {}).items()
                for name, ref in refs.items()
            ]
            for name, ref in [*fetched[task.task_id].items(), *passed_on]:
                uses.append(
                    SecretUse(dag.dag_id, task.task_id, name, "1password", str(ref), ref, "onepassword_default")
                )
    return list(dict.fromkeys(uses))


def _fetched_secrets(task: Any) -> dict[str, SecretReference]:
    """The secrets dict a Python task fetches: one of its arguments, or a module-level dict its code names."""
    callable_ = getattr(task, "python_callable", None)
    if callable_ is None:
        return {}
    candidates = [*(getattr(task, "op_args", None) or ()), *(getattr(task, "op_kwargs", None) or {}).values()]
    code = getattr(callable_, "__code__", None)
    module_globals = getattr(callable_, "__globals__", {})
    if code is not None:
        candidates += [module_globals[name] for name in _names(code) if name in module_globals]
    found: dict[str, SecretReference] = {}
    for candidate in candidates:
        found.update(_as_secrets(candidate))
    return found


def _names(code: Any) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            yield from _names(const)


def _as_secrets(value: Any) -> dict[str, SecretReference]:
    """A ``REQUIRED_SECRETS``-shaped dict parsed, or nothing when the value is not one."""
    if not isinstance(value, dict) or not value:
        return {}
    if not all(isinstance(v, (dict, str)) for v in value.values()):
        return {}
    if not any(
        (isinstance(v, dict) and "opitem" in v) or (isinstance(v, str) and v.startswith("op://"))
        for v in value.values()
    ):
        return {}
    try:
        return dict(parse_secret_mapping(value))
    except InvalidReferenceError:
        return {}


def _through_xcom(
    tasks: Sequence[Any], fetched: dict[str, dict[str, SecretReference]]
) -> dict[str, dict[str, dict[str, SecretReference]]]:
    """task id -> {secrets task id -> its secrets} for every task reading a secrets task's result, directly or
    through other tasks' results."""
    reads = {task.task_id: _xcom_sources(task) for task in tasks}
    carried: dict[str, set[str]] = {task_id: set() for task_id in reads}
    changed = True
    while changed:  # a fixpoint over the (small) task graph
        changed = False
        for task_id, sources in reads.items():
            new = {s for s in sources if s in fetched} | {c for s in sources for c in carried.get(s, ())}
            if not new <= carried[task_id]:
                carried[task_id] |= new
                changed = True
    return {t: {s: fetched[s] for s in sorted(c)} for t, c in carried.items() if c}


def _xcom_sources(task: Any) -> set[str]:
    """Task ids whose result this task reads through an XComArg in its arguments."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    found: set[str] = set()

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(value, XComArg):
            found.update(op.task_id for op, _ in value.iter_references())
        elif isinstance(value, dict):
            for inner in value.values():
                walk(inner, depth + 1)
        elif isinstance(value, (list, tuple)):
            for inner in value:
                walk(inner, depth + 1)

    for value in vars(task).values():
        walk(value)
    found.discard(task.task_id)
    return found


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

    def distinct_problems(self) -> list[tuple[Check, list[Check]]]:
        """Each distinct problem (status, reference, where, hint) once, with every use that has it."""
        groups: dict[tuple[str, str, str, str, str], list[Check]] = {}
        for c in self.problems:
            groups.setdefault((c.status, c.use.kind, c.use.key, c.where, c.hint), []).append(c)
        return sorted(((uses[0], uses) for uses in groups.values()), key=lambda g: (-len(g[1]), g[0].use.key))

    def text(self, by_item: bool = False) -> str:
        """A summary first, then one line per distinct problem (or, ``by_item``, per item), never per use."""
        missing = sum(c.status == "missing" for c in self.checks)
        errors = sum(c.status == "error" for c in self.checks)
        distinct = self.distinct_problems()
        dags = len({c.use.dag_id for c in self.checks})
        lines = [
            f"dts-airflow preflight: {len(self.checks)} secret use(s) in {dags} DAG(s), "
            f"{len(self.checks) - missing - errors} ok, {missing} missing, {errors} could not be checked"
            + (f"; {len(distinct)} distinct problem(s)" if distinct else "")
            + (f"; {len(self.import_errors)} file(s) not checked" if self.import_errors else "")
        ]
        if by_item:
            lines += self._item_lines()
        else:
            for first, uses in distinct:
                lines.append(f"{first.status.upper()}: {first.use.key} ({first.where}), {_used_by(uses)}: {first.hint}")
        for path in sorted(self.import_errors):
            lines.append(f"not checked: {path} does not import (run dts-airflow lint)")
        return "\n".join(lines)

    def _item_lines(self) -> list[str]:
        lines = []
        by_where: dict[str, list[Check]] = defaultdict(list)
        for c in self.checks:
            by_where[c.where].append(c)
        for where in sorted(by_where):
            checks = by_where[where]
            statuses = sorted({c.status for c in checks}, key=["missing", "error", "ok"].index)
            fields = sorted({_field_name(c.use) for c in checks})
            tasks = list(dict.fromkeys((c.use.dag_id, c.use.task_id) for c in checks))
            lines.append(f"{where}: {'/'.join(statuses)}; fields: {', '.join(fields)}; {len(tasks)} task(s)")
            lines += [f"    {dag_id}.{task_id}" for dag_id, task_id in tasks]
        return lines


def _field_name(use: SecretUse) -> str:
    ref = use.reference
    if ref is None:
        return use.key
    return f"{ref.section}.{ref.field}" if ref.section else ref.field


def _used_by(uses: Sequence[Check], shown: int = 3) -> str:
    tasks = list(dict.fromkeys(f"{c.use.dag_id}.{c.use.task_id}" for c in uses))
    dags = len({c.use.dag_id for c in uses})
    listed = ", ".join(tasks[:shown]) + (f" and {len(tasks) - shown} more" if len(tasks) > shown else "")
    return f"{len(uses)} use(s) by {len(tasks)} task(s) in {dags} DAG(s): {listed}"
