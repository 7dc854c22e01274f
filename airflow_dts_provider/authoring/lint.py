"""``dts-airflow lint``: the checks that keep a DAG folder healthy after the move to Airflow 3.

Each DAG file is imported the way Airflow's DAG processor imports it (so what it does at import time
is seen, and counted), then its DAGs are checked against the team's conventions; the source is also
read for Airflow 2 API and secrets that travel through XCom. Severity per rule comes from
``[tool.dts-airflow.lint]`` in the nearest ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_dts_provider.authoring.folder import LoadedFile
from airflow_dts_provider.authoring.migrate import MODULE_MOVES, SDK_NAMES, template_findings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SEVERITIES = ("error", "warning", "off")
#: rule -> (default severity, what it checks)
RULES: dict[str, tuple[str, str]] = {
    "import-error": ("error", "the file imports without errors"),
    "airflow2-removed": ("error", "no Airflow 2 API that Airflow 3 removed"),
    "airflow2-deprecated": ("warning", "DAG-authoring imports come from airflow.sdk"),
    "import-time-lookup": ("error", "no 1Password request, Variable or Connection lookup when the file is parsed"),
    "environment-passthrough": ("error", "no task environment built from the worker's (os.environ)"),
    "xcom-secrets": ("error", "no secrets passed between tasks through XCom"),
    "repo-tag": ("error", "every DAG has a repo:<name-of-the-repo> tag"),
    "owner": ("warning", "every DAG sets an owner (default_args or per task)"),
    "failure-callback": ("error", "every task has an on_failure_callback (default_args, task or DAG level)"),
    "parse-time": ("warning", "the file parses within parse-time-budget seconds"),
}
DEFAULT_PARSE_TIME_BUDGET = 2.0
REMOVED_MODULES = {m for m in MODULE_MOVES if m.endswith("_operator") or m.endswith("base_hook")}
#: Calls that return a value from 1Password (the SDK's and ours).
ONEPASSWORD_READS = {"load_dict", "load", "get_item", "get_field", "resolve", "resolve_many", "get_env_vars"}


class ConfigError(Exception):
    """``[tool.dts-airflow.lint]`` is malformed; the message says what to fix."""


@dataclass
class LintConfig:
    severities: dict[str, str] = field(default_factory=lambda: {rule: s for rule, (s, _) in RULES.items()})
    parse_time_budget: float = DEFAULT_PARSE_TIME_BUDGET
    source: str | None = None

    @classmethod
    def find(cls, start: Path, explicit: Path | None = None) -> LintConfig:
        """Read ``[tool.dts-airflow.lint]`` from ``explicit`` or the nearest pyproject.toml above ``start``."""
        candidates = [explicit] if explicit else [d / "pyproject.toml" for d in (start, *start.parents)]
        for path in candidates:
            if path is None or not path.is_file():
                if explicit:
                    raise ConfigError(f"{explicit}: no such file")
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                raise ConfigError(f"{path}: not valid TOML ({err})") from None
            section = data.get("tool", {}).get("dts-airflow")
            if section is None and not explicit:
                continue
            return cls.from_mapping((section or {}).get("lint", {}), str(path))
        return cls()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str | None = None) -> LintConfig:
        config = cls(source=source)
        where = f"{source}: [tool.dts-airflow.lint]" if source else "[tool.dts-airflow.lint]"
        for key, value in values.items():
            if key == "parse-time-budget":
                if not isinstance(value, (int, float)) or value <= 0:
                    raise ConfigError(f"{where} parse-time-budget must be a positive number of seconds")
                config.parse_time_budget = float(value)
            elif key in RULES:
                if value not in SEVERITIES:
                    raise ConfigError(f"{where} {key} = {value!r}: use one of {', '.join(SEVERITIES)}")
                config.severities[key] = value
            else:
                raise ConfigError(f"{where} unknown key {key!r}; rules are {', '.join(RULES)}, plus parse-time-budget")
        return config


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity} [{self.rule}] {self.message}"


@dataclass
class LintReport:
    violations: list[Violation]
    parse_times: dict[str, float]
    config: LintConfig

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.source,
            "violations": [v.__dict__ for v in self.violations],
            "parse_seconds": {path: round(seconds, 4) for path, seconds in self.parse_times.items()},
            "errors": len(self.errors),
            "warnings": len(self.violations) - len(self.errors),
        }

    def text(self) -> str:
        lines = [str(v) for v in self.violations]
        lines.append("Parse time per file (s), slowest first:")
        for path, seconds in sorted(self.parse_times.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {seconds:7.3f}  {path}")
        warnings = len(self.violations) - len(self.errors)
        lines.append(
            f"dts-airflow lint: {len(self.parse_times)} files, {len(self.errors)} error(s), {warnings} warning(s)"
        )
        return "\n".join(lines)


def lint(folder: Path, loaded: Sequence[LoadedFile], config: LintConfig) -> LintReport:
    found: list[tuple[str, int, str, str]] = []
    for result in loaded:
        source = (folder / result.path).read_text(encoding="utf-8", errors="replace")
        found += [(result.path, line, rule, message) for line, rule, message in _check_file(result, source, config)]
    violations = [
        Violation(path, line, rule, config.severities[rule], message)
        for path, line, rule, message in sorted(found)
        if config.severities[rule] != "off"
    ]
    return LintReport(violations, {r.path: r.seconds for r in loaded}, config)


def _check_file(result: LoadedFile, source: str, config: LintConfig) -> Iterator[tuple[int, str, str]]:
    if result.error:
        yield _error_line(result.error, result.path), "import-error", _last_line(result.error)
    if result.seconds > config.parse_time_budget:
        yield 1, "parse-time", f"took {result.seconds:.2f} s to parse (budget {config.parse_time_budget:g} s)"
    if result.lookups or result.connect_requests or result.network_connections:
        what = list(dict.fromkeys(result.lookups))
        if result.connect_requests:
            what.append(f"{len(result.connect_requests)} request(s) to 1Password Connect")
        if result.network_connections:
            what.append(f"{result.network_connections} network connection(s)")
        yield (
            result.lookup_line,
            "import-time-lookup",
            "looks up secrets while the file is parsed (every parse, on every DAG processor loop): "
            + "; ".join(what)
            + ". What a file computes while parsed is stored in the metadata DB unmasked (the serialized DAG; "
            "the import-error table if parsing fails). Use templates ({{ var.value.x }}, {{ conn.x }}) or look "
            "them up inside a task",
        )
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    if tree is not None:
        yield from _source_checks(tree)
    for dag in result.dags:
        yield from _dag_checks(dag, source, tree)


def _error_line(error: str, path: str) -> int:
    """The deepest traceback line inside the DAG file itself (else 1)."""
    found = 1
    for match in re.finditer(r'File "([^"]+)", line (\d+)', error):
        if match.group(1).endswith(path):
            found = int(match.group(2))
    return found


def _last_line(error: str) -> str:
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "import failed"


# ---------------------------------------------------------------------------------- source


def _source_checks(tree: ast.Module) -> Iterator[tuple[int, str, str]]:
    task_functions = _task_functions(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = {alias.name for alias in node.names}
            if node.module in REMOVED_MODULES or node.module.startswith("airflow.contrib"):
                yield (
                    node.lineno,
                    "airflow2-removed",
                    f"imports {node.module}, removed in Airflow 3 (dts-airflow migrate)",
                )
            elif names & SDK_NAMES.get(node.module, set()) or node.module in {
                "airflow.operators.bash",
                "airflow.operators.python",
            }:
                yield node.lineno, "airflow2-deprecated", f"imports from {node.module}: use airflow.sdk / the providers"
            if node.module.endswith("slack_operator") and not node.module.startswith("airflow"):
                yield (
                    node.lineno,
                    "airflow2-removed",
                    (
                        f"imports the Airflow 2 Slack helpers ({node.module}): "
                        "use airflow_dts_provider.notifications.slack"
                    ),
                )
        elif isinstance(node, ast.Call):
            yield from _call_checks(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for reason in template_findings(node.value):
                yield node.lineno, "airflow2-removed", reason
        elif isinstance(node, ast.FunctionDef) and node.name in task_functions:
            line = _returns_onepassword_value(node)
            if line:
                yield (
                    line,
                    "xcom-secrets",
                    (
                        f"task {node.name}() returns a value read from 1Password: its return value is stored in XCom. "
                        "Use SecretDockerOperator(secrets=...) or read the secret where it is used"
                    ),
                )


def _call_checks(node: ast.Call) -> Iterator[tuple[int, str, str]]:
    name = _call_name(node.func)
    keywords = {k.arg: k.value for k in node.keywords if k.arg}
    if "schedule_interval" in keywords:
        yield node.lineno, "airflow2-removed", "schedule_interval= was removed in Airflow 3: use schedule="
    for keyword in ("environment", "env", "private_environment"):
        value = keywords.get(keyword)
        if value is not None and _mentions_os_environ(value):
            yield (
                value.lineno,
                "environment-passthrough",
                f"{keyword}= passes the worker's whole environment (os.environ) to the task, which holds the Connect "
                "token and every setting: list the variables it needs (secrets via SecretDockerOperator(secrets=...))",
            )
    auto_remove = keywords.get("auto_remove")
    if isinstance(auto_remove, ast.Constant) and isinstance(auto_remove.value, bool):
        yield node.lineno, "airflow2-removed", "auto_remove=True/False: use 'success' / 'never' (providers-docker 4)"
    if name == "get_env_vars_task":
        yield (
            node.lineno,
            "xcom-secrets",
            (
                "get_env_vars_task() returns secrets as XCom: "
                "use SecretDockerOperator(secrets=...) (dts-airflow migrate)"
            ),
        )


def _mentions_os_environ(node: ast.expr) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "environ" and isinstance(n.value, ast.Name) and n.value.id == "os"
        for n in ast.walk(node)
    )


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _task_functions(tree: ast.Module) -> set[str]:
    """Functions that run as tasks: ``@task``-decorated, or a PythonOperator's ``python_callable``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if _call_name(target) == "task" or (
                    isinstance(target, ast.Attribute) and _call_name(target.value) == "task"
                ):
                    names.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg == "python_callable" and isinstance(node.value, ast.Name):
            names.add(node.value.id)
    return names


def _returns_onepassword_value(function: ast.FunctionDef) -> int | None:
    """Line of a ``return`` whose value comes from a 1Password read (directly or through a local name)."""
    from_onepassword: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and _reads_onepassword(node.value):
            from_onepassword.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if _reads_onepassword(value) or (isinstance(value, ast.Name) and value.id in from_onepassword):
                return node.lineno
    return None


def _reads_onepassword(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _call_name(node.func) in ONEPASSWORD_READS


# ---------------------------------------------------------------------------------- DAGs


def _dag_checks(dag: Any, source: str, tree: ast.Module | None) -> Iterator[tuple[int, str, str]]:
    line = _dag_line(dag.dag_id, source, tree)
    tags = {str(t) for t in (dag.tags or ())}
    if not any(t.startswith("repo:") and len(t) > 5 for t in tags):
        yield line, "repo-tag", f"DAG {dag.dag_id!r} has no repo:<name-of-the-repo> tag"
    from airflow.configuration import conf

    default_owner = conf.get("operators", "default_owner", fallback="airflow")
    explicit = (dag.default_args or {}).get("owner")
    if not explicit and all(t.owner == default_owner for t in dag.tasks):
        yield line, "owner", f"DAG {dag.dag_id!r} sets no owner: add 'owner' to default_args"
    if not dag.on_failure_callback:
        missing = sorted(t.task_id for t in dag.tasks if not t.on_failure_callback)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            yield (
                line,
                "failure-callback",
                (
                    f"DAG {dag.dag_id!r}: no on_failure_callback for {shown} "
                    "(e.g. default_args={'on_failure_callback': task_fail_slack_alert})"
                ),
            )


def _dag_line(dag_id: str, source: str, tree: ast.Module | None) -> int:
    """The line naming the DAG (its dag_id string, or the @dag function), else the file's first ``DAG(``
    call or ``@dag`` function (a computed dag_id), else 1. ``tree``: the file parsed once by the caller."""
    lines = source.splitlines()
    for pattern in (f'"{dag_id}"', f"'{dag_id}'", f"def {dag_id}("):
        for number, text in enumerate(lines, 1):
            if pattern in text:
                return number
    if tree is None:
        return 1
    made = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Call) and _call_name(node.func) == "DAG")
        or (
            isinstance(node, ast.FunctionDef)
            and any(_call_name(d.func if isinstance(d, ast.Call) else d) == "dag" for d in node.decorator_list)
        )
    ]
    return min(made, default=1)
