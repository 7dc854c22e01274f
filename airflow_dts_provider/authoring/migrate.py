"""``dts-airflow migrate``: move Airflow 2 DAG files onto Airflow 3 and this provider.

Every change is an edit of the concrete syntax tree (libcst), so comments and formatting survive.
What it cannot prove safe is left as it is and reported with the line and the reason. Running it
again on its own output changes nothing.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import multiprocessing
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import (
    Assignment,
    ImportAssignment,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from airflow_dts_provider.authoring.folder import Progress, relative

#: Modules whose every name moved (the removed Airflow 2 paths first).
MODULE_MOVES = {
    "airflow.operators.docker_operator": "airflow.providers.docker.operators.docker",
    "airflow.operators.bash_operator": "airflow.providers.standard.operators.bash",
    "airflow.operators.python_operator": "airflow.providers.standard.operators.python",
    "airflow.operators.bash": "airflow.providers.standard.operators.bash",
    "airflow.operators.python": "airflow.providers.standard.operators.python",
    "airflow.hooks.base_hook": "airflow.sdk",
    "airflow.hooks.base": "airflow.sdk",
    "airflow.models.param": "airflow.sdk",
}
#: DAG-authoring names that moved to ``airflow.sdk`` out of modules that keep other names.
SDK_NAMES = {
    "airflow": {"DAG"},
    "airflow.models": {"DAG", "Variable", "Param", "BaseOperator"},
    "airflow.models.dag": {"DAG"},
    "airflow.models.baseoperator": {"BaseOperator"},
    "airflow.decorators": {"dag", "task", "task_group", "setup", "teardown"},
}
#: Imported by DAG files out of habit; dropped when the file does not use them.
UNUSED_MODEL_IMPORTS = {("airflow.models", "DagRun"), ("airflow.models", "TaskInstance")}
SLACK_HELPERS = {"task_fail_slack_alert", "task_fail_slack_alert_critical", "task_success_slack_alert"}
SLACK_MODULE = "airflow_dts_provider.notifications.slack"
SECRET_DOCKER_MODULE = "airflow_dts_provider.operators.docker"  # noqa: S105 (a module name)
DAG_FACTORIES = {
    "airflow.DAG",
    "airflow.models.DAG",
    "airflow.models.dag.DAG",
    "airflow.sdk.DAG",
    "airflow.decorators.dag",
    "airflow.sdk.dag",
}
TASK_DECORATORS = {"airflow.decorators.task", "airflow.sdk.task"}
VARIABLE_GET = {"airflow.models.Variable.get", "airflow.models.variable.Variable.get"}
AUTO_REMOVE = {"True": "success", "False": "never"}
#: Template variables Airflow 3 removed, with what to use instead.
REMOVED_TEMPLATE_VARS = {
    "execution_date": "logical_date (None for manual runs) or data_interval_start",
    "next_execution_date": "data_interval_end",
    "prev_execution_date": "prev_data_interval_start_success",
    "prev_execution_date_success": "prev_data_interval_start_success",
    "next_ds": "data_interval_end | ds",
    "next_ds_nodash": "data_interval_end | ds_nodash",
    "prev_ds": "data_interval_start | ds",
    "prev_ds_nodash": "data_interval_start | ds_nodash",
    "tomorrow_ds": "macros.ds_add(ds, 1)",
    "tomorrow_ds_nodash": "macros.ds_add(ds, 1)",
    "yesterday_ds": "macros.ds_add(ds, -1)",
    "yesterday_ds_nodash": "macros.ds_add(ds, -1)",
}
_TEMPLATE_BLOCK = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.DOTALL)
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Finding:
    """A site migrate left for a person."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class FileMigration:
    path: str
    original: str
    migrated: str
    sites_converted: int = 0
    changes: list[str] = field(default_factory=list)
    left_for_you: list[Finding] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.migrated != self.original

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.migrated.splitlines(keepends=True),
                f"a/{self.path}",
                f"b/{self.path}",
            )
        )


@dataclass
class MigrationReport:
    folder: str
    files: list[FileMigration]
    unused_helpers: list[str]

    @property
    def changed_files(self) -> list[FileMigration]:
        return [f for f in self.files if f.changed]

    @property
    def left_for_you(self) -> list[Finding]:
        return [finding for f in self.files for finding in f.left_for_you]

    @property
    def sites_converted(self) -> int:
        return sum(f.sites_converted for f in self.files)

    def behaviour_changes(self) -> list[str]:
        notes = []
        if self.sites_converted:
            notes.append(
                "Secrets are now fetched inside each Docker task (SecretDockerOperator) through the "
                "'onepassword_default' connection, or OP_CONNECT/OP_API_TOKEN/OP_VAULT_ID when it does not exist; "
                "the separate get_env_vars task and its XCom are gone."
            )
        if any("Slack" in change for f in self.files for change in f.changes):
            notes.append(
                "Slack alerts come from airflow_dts_provider.notifications.slack and are sent only where the "
                "ENVIRONMENT variable is listed in [dts] slack_alert_environments (default: production), "
                "like the old helpers; they use the existing 'slack' connection unchanged."
            )
        if self.unused_helpers:
            notes.append(
                "Nothing imports these helper modules any more; delete them (or keep them in .airflowignore): "
                + ", ".join(self.unused_helpers)
            )
        return notes

    def as_dict(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "files_changed": [f.path for f in self.changed_files],
            "sites_converted": self.sites_converted,
            "changes": {f.path: f.changes for f in self.changed_files},
            "left_for_you": [{"path": x.path, "line": x.line, "reason": x.reason} for x in self.left_for_you],
            "unused_helpers": self.unused_helpers,
            "behaviour_changes": self.behaviour_changes(),
        }

    def summary(self) -> str:
        lines = [
            f"dts-airflow migrate: {len(self.changed_files)} of {len(self.files)} files changed, "
            f"{self.sites_converted} Docker task(s) moved to SecretDockerOperator."
        ]
        left = self.left_for_you
        lines.append(f"Left for you ({len(left)}):" if left else "Left for you: nothing.")
        lines.extend(f"  {finding}" for finding in left)
        notes = self.behaviour_changes()
        if notes:
            lines.append("Behaviour changes to know:")
            lines.extend(f"  - {note}" for note in notes)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- folder


def migrate_folder(folder: Path, files: Sequence[Path], progress: Progress | None = None) -> MigrationReport:
    """Migrate every file in memory; nothing is written (see :func:`write`)."""
    jobs = [(path.read_text(encoding="utf-8"), relative(path, folder)) for path in files]
    results = []
    # Syntax-tree analysis is CPU-bound Python: spread a long folder over the cores.
    workers = min(os.cpu_count() or 1, 8) if len(jobs) >= 16 else 1
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            outcomes: Iterable[FileMigration] = pool.map(_migrate_job, jobs, chunksize=4)
        else:
            outcomes = map(_migrate_job, jobs)
        for path, outcome in zip(files, outcomes, strict=True):
            if progress:
                progress.step(path)
            results.append(outcome)
    before = _helper_importers(folder, files, {r.path: r.original for r in results})
    after = _helper_importers(folder, files, {r.path: r.migrated for r in results})
    unused = sorted(module for module, users in before.items() if users and not after.get(module))
    return MigrationReport(str(folder), results, unused)


def _migrate_job(job: tuple[str, str]) -> FileMigration:
    return migrate_source(*job)


def write(report: MigrationReport, folder: Path) -> None:
    for result in report.changed_files:
        (folder / result.path).write_text(result.migrated, encoding="utf-8")


def _helper_importers(folder: Path, files: Iterable[Path], sources: dict[str, str]) -> dict[str, set[str]]:
    """Modules in sub-packages of the folder (``utils.slack_operator``) -> files importing them."""
    helpers = {}
    for path in files:
        rel = Path(relative(path, folder))
        if len(rel.parts) > 1 and rel.name != "__init__.py":
            helpers[".".join(rel.with_suffix("").parts)] = rel.as_posix()
    users: dict[str, set[str]] = {module: set() for module in helpers}
    for importer, source in sources.items():
        for imported in _imported_modules(source):
            if imported in users and helpers[imported] != importer:
                users[imported].add(importer)
    return {helpers[m]: u for m, u in users.items()}


def _imported_modules(source: str) -> set[str]:
    """Every module (and ``module.name``) a source imports; read with ``ast``, which is fast."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


# ---------------------------------------------------------------------------------- one file


def migrate_source(source: str, path: str = "<string>") -> FileMigration:
    """Migrate one module's source text."""
    result = FileMigration(path, source, source)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        result.left_for_you.append(Finding(path, err.raw_line, f"not valid Python, left unchanged: {err.message}"))
        return result
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    analysis = _Analysis(path)
    wrapper.visit(analysis)
    result.left_for_you.extend(analysis.findings)
    if not analysis.has_work():
        return result
    unused_before = _unused_imports(wrapper.module, wrapper.resolve(ScopeProvider))
    rewrite = _Rewrite(analysis)
    tree = wrapper.module.visit(rewrite)
    unused_after = _unused_imports(tree)
    unused = (unused_after - unused_before) | {key for key in unused_after if (key[0], key[1]) in UNUSED_MODEL_IMPORTS}
    tidy = _TidyImports(unused, place_secret_docker=bool(analysis.docker_calls))
    tree = tree.visit(tidy)
    needed = list(analysis.added_imports)
    if analysis.docker_calls and not tidy.placed_secret_docker:
        needed.append((SECRET_DOCKER_MODULE, "SecretDockerOperator", None))
    if needed:
        context = CodemodContext()
        for module_name, name, asname in needed:
            AddImportsVisitor.add_needed_import(context, module_name, name, asname)
        tree = AddImportsVisitor(context).transform_module(tree)
    result.migrated = tree.code
    result.sites_converted = len(analysis.docker_calls)
    result.changes = analysis.change_notes()
    return result


def _dotted(node: cst.BaseExpression | cst.Attribute | cst.Name) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _unused_imports(
    tree: cst.Module, scopes: Mapping[cst.CSTNode, Any] | None = None
) -> set[tuple[str, str | None, str | None]]:
    """(module, name, asname) of every import binding nothing refers to."""
    if scopes is None:
        scopes = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(ScopeProvider)
    unused: set[tuple[str, str | None, str | None]] = set()
    for scope in {id(s): s for s in scopes.values() if s is not None}.values():
        for assignment in scope.assignments:
            if not isinstance(assignment, ImportAssignment) or assignment.references:
                continue
            node = assignment.node
            assert isinstance(node, (cst.Import, cst.ImportFrom))
            for alias in node.names if not isinstance(node.names, cst.ImportStar) else ():
                local = alias.evaluated_alias or alias.evaluated_name
                if local != assignment.name and not local.startswith(assignment.name + "."):
                    continue
                if isinstance(node, cst.ImportFrom) and node.module is not None and not node.relative:
                    unused.add((_dotted(node.module), alias.evaluated_name, alias.evaluated_alias))
                elif isinstance(node, cst.Import):
                    unused.add((alias.evaluated_name, None, alias.evaluated_alias))
    return unused


def template_findings(text: str) -> list[str]:
    """What a Jinja template in ``text`` uses that Airflow 3 removed, with the replacement."""
    reasons = []
    for match in _TEMPLATE_BLOCK.finditer(text):
        body = match.group(1) or match.group(2) or ""
        for name in dict.fromkeys(_IDENTIFIER.findall(body)):
            if name in REMOVED_TEMPLATE_VARS:
                reasons.append(
                    f"template uses {{{{ {name} }}}}, removed in Airflow 3: use {REMOVED_TEMPLATE_VARS[name]}"
                )
    return reasons


@dataclass
class _SecretsTask:
    """``name = get_env_vars_task(X)`` (or a local ``@task`` returning ``load_dict(client, X)``)."""

    statement: cst.SimpleStatementLine
    target: cst.Name
    secrets: cst.BaseExpression
    line: int
    docker_calls: list[cst.Call] = field(default_factory=list)
    chain_operands: list[cst.Name] = field(default_factory=list)
    blockers: list[tuple[int, str]] = field(default_factory=list)


class _Analysis(cst.CSTVisitor):
    """Read the original tree and decide every edit (the rewrite then only applies them)."""

    METADATA_DEPENDENCIES = (ScopeProvider, QualifiedNameProvider, PositionProvider, ParentNodeProvider)

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.findings: list[Finding] = []
        self.docker_calls: dict[cst.Call, cst.BaseExpression] = {}
        self.auto_remove_args: set[cst.Arg] = set()
        self.schedule_args: set[cst.Arg] = set()
        self.default_var_args: set[cst.Arg] = set()
        self.removed_statements: set[cst.CSTNode] = set()
        self.dropped_operands: set[cst.CSTNode] = set()
        self.import_edits: dict[cst.ImportFrom, tuple[str | None, list[str]]] = {}
        self.added_imports: list[tuple[str, str, str | None]] = []
        self._local_tasks: dict[cst.FunctionDef, tuple[cst.BaseExpression | None, int | None]] = {}
        self._secrets_tasks: list[_SecretsTask] = []
        self._notes: set[str] = set()

    # ----------------------------------------------------------------- helpers
    def line(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def qualnames(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self.get_metadata(QualifiedNameProvider, node, set())}

    def left(self, node: cst.CSTNode | int, reason: str) -> None:
        line = node if isinstance(node, int) else self.line(node)
        self.findings.append(Finding(self.path, line, reason))

    def has_work(self) -> bool:
        return bool(
            self.docker_calls
            or self.auto_remove_args
            or self.schedule_args
            or self.default_var_args
            or self.import_edits
            or self.removed_statements
        )

    def change_notes(self) -> list[str]:
        notes = set(self._notes)
        if self.docker_calls:
            notes.add(
                f"{len(self.docker_calls)} Docker task(s) -> SecretDockerOperator(secrets=...), which removes "
                "its containers (auto_remove=True dropped: it is the default)"
            )
        converted = {arg for call in self.docker_calls for arg in call.args}
        if any(arg not in converted or _is_false(arg) for arg in self.auto_remove_args):
            notes.add("auto_remove=True/False -> 'success'/'never'")
        if self.schedule_args:
            notes.add("schedule_interval= -> schedule=")
        if self.default_var_args:
            notes.add("Variable.get(default_var=) -> default=")
        return sorted(notes)

    # ----------------------------------------------------------------- imports
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = _dotted(alias.name)
            if name in MODULE_MOVES or name.startswith("airflow.contrib") or name.endswith("slack_operator"):
                self.left(node, f"'import {name}': import the names you use from their new module instead")

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.module is None or node.relative or isinstance(node.names, cst.ImportStar):
            return
        module = _dotted(node.module)
        names = [alias.evaluated_name for alias in node.names]
        if module.startswith("airflow.contrib"):
            self.left(node, f"imports {module}, removed in Airflow 3 (no automatic replacement)")
            return
        if module in MODULE_MOVES:
            self.import_edits[node] = (MODULE_MOVES[module], [])
            self._notes.add(f"imports from {module} -> {MODULE_MOVES[module]}")
            return
        if module.split(".")[-1] == "slack_operator" and not module.startswith("airflow"):
            others = [n for n in names if n not in SLACK_HELPERS]
            if others:
                self.left(node, f"imports {', '.join(others)} from {module}: no provider drop-in, move by hand")
                self._split_import(node, [n for n in names if n in SLACK_HELPERS], SLACK_MODULE)
            else:
                self.import_edits[node] = (SLACK_MODULE, [])
            self._notes.add(f"Slack helpers from {module} -> {SLACK_MODULE}")
            return
        movable = SDK_NAMES.get(module, set())
        moved = [n for n in names if n in movable]
        if not moved:
            return
        self._notes.add(f"DAG-authoring imports from {module} -> airflow.sdk")
        if len(moved) == len(names):
            self.import_edits[node] = ("airflow.sdk", [])
        else:
            self._split_import(node, moved, "airflow.sdk")

    def _split_import(self, node: cst.ImportFrom, moved: list[str], target: str) -> None:
        """Take ``moved`` out of this import line and import them (aliases kept) from ``target``."""
        if not moved or isinstance(node.names, cst.ImportStar):
            return
        self.import_edits[node] = (None, moved)
        self.added_imports += [
            (target, alias.evaluated_name, alias.evaluated_alias)
            for alias in node.names
            if alias.evaluated_name in moved
        ]

    # ----------------------------------------------------------------- local secrets tasks
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if not any(self.qualnames(_decorator_target(d.decorator)) & TASK_DECORATORS for d in node.decorators):
            return
        returned = _returned_load_dict(node, self)
        if returned is None:
            return
        params = [p.name.value for p in node.params.params]
        if isinstance(returned, cst.Name) and returned.value in params:
            self._local_tasks[node] = (None, params.index(returned.value))
        else:
            self._local_tasks[node] = (returned, None)

    # ----------------------------------------------------------------- calls and strings
    def visit_Call(self, node: cst.Call) -> None:
        names = self.qualnames(node.func)
        if any(n.endswith("DockerOperator") for n in names):
            for arg in node.args:
                if arg.keyword is None:
                    continue
                if arg.keyword.value == "auto_remove":
                    if isinstance(arg.value, cst.Name) and arg.value.value in AUTO_REMOVE:
                        self.auto_remove_args.add(arg)
                elif arg.keyword.value == "environment" and _mentions_os_environ(arg.value):
                    self.left(
                        arg,
                        "environment= passes the worker's whole environment (os.environ) into the container, "
                        "which can include the Connect token: list the variables it needs (secrets via secrets=)",
                    )
        if names & DAG_FACTORIES:
            keywords = {a.keyword.value for a in node.args if a.keyword}
            for arg in node.args:
                if arg.keyword is not None and arg.keyword.value == "schedule_interval":
                    if "schedule" in keywords:
                        self.left(arg, "both schedule_interval= and schedule= given: keep one")
                    else:
                        self.schedule_args.add(arg)
        if names & VARIABLE_GET:
            self.default_var_args.update(a for a in node.args if a.keyword and a.keyword.value == "default_var")
        fetches = any(n.endswith(("onepassword.get_env_vars", ".load_dict")) for n in names)
        if fetches and not self._inside_task(node):
            self.left(node, "fetches 1Password secrets while the file is parsed: fetch them inside a task")

    def _inside_task(self, node: cst.CSTNode) -> bool:
        parent = self.get_metadata(ParentNodeProvider, node, None)
        while parent is not None:
            if isinstance(parent, cst.FunctionDef):
                return True
            parent = self.get_metadata(ParentNodeProvider, parent, None)
        return False

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self._check_text(node, str(node.evaluated_value))

    def visit_FormattedStringText(self, node: cst.FormattedStringText) -> None:
        self._check_text(node, node.value.replace("{{", "{").replace("}}", "}"))

    def _check_text(self, node: cst.CSTNode, text: str) -> None:
        reasons = template_findings(text)
        if "xcom_pull" in text and "get_env_vars" in text:
            reasons.append("a template reads the get_env_vars task's XCom (secrets): fetch them in the task itself")
        for reason in reasons:
            finding = Finding(self.path, self.line(node), reason)
            if finding not in self.findings:
                self.findings.append(finding)

    # ----------------------------------------------------------------- secrets tasks
    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
            return
        if not isinstance(node.value, cst.Call):
            return
        secrets = self._secrets_argument(node.value)
        if secrets is None:
            return
        statement = self.get_metadata(ParentNodeProvider, node)
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            self.left(node, "get_env_vars_task(...) shares its line with other statements: split it first")
            return
        target = node.targets[0].target
        self._secrets_tasks.append(_SecretsTask(statement, target, secrets, self.line(node)))

    def _secrets_argument(self, call: cst.Call) -> cst.BaseExpression | None:
        names = self.qualnames(call.func)
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        keyword = {a.keyword.value: a.value for a in call.args if a.keyword}
        if any(n.endswith("get_env_vars_task") for n in names):
            return positional[0] if len(positional) == 1 else keyword.get("required_secrets")
        if isinstance(call.func, cst.Name):
            for definition, (secrets, index) in self._local_tasks.items():
                if self._refers_to(call.func, definition):
                    if index is not None:
                        return positional[index] if index < len(positional) else None
                    return secrets
        return None

    def _refers_to(self, name: cst.Name, definition: cst.FunctionDef) -> bool:
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return False
        return any(isinstance(a, Assignment) and a.node is definition for a in scope[name.value])

    def leave_Module(self, original_node: cst.Module) -> None:
        for task in self._secrets_tasks:
            self._trace(task)
        used_local_tasks = {d for d in self._local_tasks if self._still_called(d)}
        for definition in set(self._local_tasks) - used_local_tasks:
            self.removed_statements.add(definition)

    def _trace(self, task: _SecretsTask) -> None:
        scope = self.get_metadata(ScopeProvider, task.target)
        assert scope is not None
        assignments = [a for a in scope.assignments[task.target.value] if isinstance(a, Assignment)]
        if len(assignments) != 1:
            self.left(task.line, f"'{task.target.value}' is assigned more than once; migrate it by hand")
            return
        for access in assignments[0].references:
            self._classify(task, access.node)
        if not task.docker_calls and not task.blockers:
            task.blockers.append((task.line, "the secrets task feeds no Docker task"))
        if len(task.docker_calls) > 1 and not isinstance(task.secrets, (cst.Name, cst.Attribute, cst.Dict)):
            task.blockers.append((task.line, "the secrets expression is used by several tasks: give it a name first"))
        late = self._mutated_after(task)
        if late:
            task.blockers.append((late, "the secrets dict changes after the Docker task is built"))
        if task.blockers:
            for line, reason in task.blockers:
                self.left(line, f"'{task.target.value}' (secrets from 1Password via XCom) {reason}; left as it is")
            return
        self.removed_statements.add(task.statement)
        for call in task.docker_calls:
            self.docker_calls[call] = task.secrets
        self.dropped_operands.update(task.chain_operands)

    def _classify(self, task: _SecretsTask, node: cst.CSTNode) -> None:
        parent = self.get_metadata(ParentNodeProvider, node)
        if isinstance(parent, cst.Arg) and parent.keyword is not None:
            call = self.get_metadata(ParentNodeProvider, parent)
            names = self.qualnames(call.func) if isinstance(call, cst.Call) else set()
            if parent.keyword.value == "environment" and any(n.endswith("DockerOperator") for n in names):
                assert isinstance(call, cst.Call)
                keywords = {a.keyword.value for a in call.args if a.keyword}
                if "private_environment" in keywords or any(a.star for a in call.args):
                    task.blockers.append((self.line(call), "goes to a DockerOperator with private_environment/**"))
                else:
                    task.docker_calls.append(call)
                return
            if parent.keyword.value == "env":
                task.blockers.append((self.line(parent), "is passed to env= of a non-Docker task"))
                return
        chain = self._chain_statement(node)
        if chain is not None:
            task.chain_operands.append(node)  # type: ignore[arg-type]
            return
        task.blockers.append((self.line(node), "is read by another task or expression"))

    def _chain_statement(self, node: cst.CSTNode) -> cst.SimpleStatementLine | None:
        """The ``a >> b >> c`` statement the name is an operand of (directly or in a list), if any."""
        parent = self.get_metadata(ParentNodeProvider, node)
        if isinstance(parent, cst.Element):
            listing = self.get_metadata(ParentNodeProvider, parent)
            if not isinstance(listing, cst.List):
                return None
            parent = self.get_metadata(ParentNodeProvider, listing)
        operators = set()
        while isinstance(parent, cst.BinaryOperation):
            operators.add(type(parent.operator))
            parent = self.get_metadata(ParentNodeProvider, parent)
        if not operators or (not operators <= {cst.RightShift} and not operators <= {cst.LeftShift}):
            return None
        if isinstance(parent, cst.Expr):
            statement = self.get_metadata(ParentNodeProvider, parent)
            if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
                return statement
        return None

    def _mutated_after(self, task: _SecretsTask) -> int | None:
        if not isinstance(task.secrets, cst.Name) or not task.docker_calls:
            return None
        first_use = min(self.line(c) for c in task.docker_calls)
        scope = self.get_metadata(ScopeProvider, task.secrets, None)
        if scope is None:
            return None
        for assignment in scope[task.secrets.value]:
            for access in getattr(assignment, "references", ()):
                parent = self.get_metadata(ParentNodeProvider, access.node)
                mutators = {"update", "pop", "setdefault", "clear"}
                mutating = isinstance(parent, cst.Subscript) or (
                    isinstance(parent, cst.Attribute) and parent.attr.value in mutators
                )
                if mutating and self.line(access.node) > first_use:
                    return self.line(access.node)
        return None

    def _still_called(self, definition: cst.FunctionDef) -> bool:
        scope = self.get_metadata(ScopeProvider, definition, None)
        if scope is None:
            return True
        converted = {id(t.statement) for t in self._secrets_tasks if t.statement in self.removed_statements}
        for assignment in scope[definition.name.value]:
            if not (isinstance(assignment, Assignment) and assignment.node is definition):
                continue
            for access in assignment.references:
                statement = self._statement_of(access.node)
                if id(statement) not in converted:
                    return True
        return False

    def _statement_of(self, node: cst.CSTNode) -> cst.CSTNode | None:
        current: cst.CSTNode | None = node
        while current is not None and not isinstance(current, cst.SimpleStatementLine):
            current = self.get_metadata(ParentNodeProvider, current, None)
        return current


def _flatten_chain(node: cst.BaseExpression) -> tuple[list[cst.BaseExpression], list[cst.BaseBinaryOp]]:
    """``a >> b >> c`` -> ([a, b, c], [>>, >>])."""
    operands: list[cst.BaseExpression] = []
    operators: list[cst.BaseBinaryOp] = []
    while isinstance(node, cst.BinaryOperation):
        operands.insert(0, node.right)
        operators.insert(0, node.operator)
        node = node.left
    operands.insert(0, node)
    return operands, operators


def _decorator_target(decorator: cst.BaseExpression) -> cst.BaseExpression:
    return decorator.func if isinstance(decorator, cst.Call) else decorator


def _returned_load_dict(function: cst.FunctionDef, analysis: _Analysis) -> cst.BaseExpression | None:
    """X when the function's body is ``... return load_dict(client, X)``."""
    found: list[cst.BaseExpression] = []

    class Returns(cst.CSTVisitor):
        def visit_Return(self, node: cst.Return) -> None:
            value = node.value
            if isinstance(value, cst.Call) and any(n.endswith("load_dict") for n in analysis.qualnames(value.func)):
                args = [a.value for a in value.args if a.keyword is None]
                keyword = {a.keyword.value: a.value for a in value.args if a.keyword}
                config = args[1] if len(args) > 1 else keyword.get("config")
                if config is not None:
                    found.append(config)

    function.body.visit(Returns())
    return found[0] if len(found) == 1 else None


def _mentions_os_environ(node: cst.CSTNode) -> bool:
    class Find(cst.CSTVisitor):
        hit = False

        def visit_Attribute(self, attribute: cst.Attribute) -> None:
            if _dotted(attribute) == "os.environ":
                Find.hit = True

    node.visit(Find())
    return Find.hit


def _is_false(arg: cst.Arg) -> bool:
    return isinstance(arg.value, cst.Name) and arg.value.value == "False"


class _Rewrite(cst.CSTTransformer):
    """Apply the edits _Analysis decided, keyed by the original nodes."""

    def __init__(self, analysis: _Analysis):
        super().__init__()
        self.a = analysis

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        if original_node in self.a.auto_remove_args:
            assert isinstance(original_node.value, cst.Name)
            return updated_node.with_changes(value=cst.SimpleString(f'"{AUTO_REMOVE[original_node.value.value]}"'))
        if original_node in self.a.schedule_args:
            return updated_node.with_changes(keyword=cst.Name("schedule"))
        if original_node in self.a.default_var_args:
            return updated_node.with_changes(keyword=cst.Name("default"))
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        secrets = self.a.docker_calls.get(original_node)
        if secrets is None:
            return updated_node
        args: list[cst.Arg] = []
        for original, arg in zip(original_node.args, updated_node.args, strict=True):
            keyword = arg.keyword.value if arg.keyword is not None else None
            if keyword == "environment":
                arg = arg.with_changes(keyword=cst.Name("secrets"), value=secrets.deep_clone())
            elif keyword == "auto_remove" and isinstance(original.value, cst.Name) and original.value.value == "True":
                # Airflow 2's True removed the container on exit; SecretDockerOperator's default removes
                # every container that received secrets, even one stopped by a kill.
                if arg is updated_node.args[-1] and args:
                    args[-1] = args[-1].with_changes(comma=arg.comma)
                continue
            args.append(arg)
        return updated_node.with_changes(func=cst.Name("SecretDockerOperator"), args=args)

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        edit = self.a.import_edits.get(original_node)
        if edit is None:
            return updated_node
        new_module, moved = edit
        if new_module is not None:
            return updated_node.with_changes(module=cst.parse_expression(new_module))
        assert not isinstance(updated_node.names, cst.ImportStar)
        kept = [alias for alias in updated_node.names if alias.evaluated_name not in moved]
        if not kept:  # cannot happen (a whole move renames the module instead); keep the body sizes equal
            return updated_node
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(names=kept)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        body = original_node.body[0] if len(original_node.body) == 1 else None
        if isinstance(body, cst.Expr) and isinstance(body.value, cst.BinaryOperation) and self.a.dropped_operands:
            rebuilt = self._rebuild_chain(body.value, updated_node)
            if rebuilt is None:
                self.a.removed_statements.add(original_node)
                return updated_node
            return rebuilt
        return updated_node

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return updated_node.with_changes(body=self._kept(original_node.body, updated_node.body, in_block=True))

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return updated_node.with_changes(body=self._kept(original_node.body, updated_node.body, in_block=False))

    def _kept(
        self, original: Sequence[cst.BaseStatement], updated: Sequence[cst.BaseStatement], in_block: bool
    ) -> list[cst.BaseStatement]:
        drop = [node in self.a.removed_statements for node in original]
        return _remove_statements(list(updated), drop, in_block)

    def _rebuild_chain(
        self, original: cst.BinaryOperation, updated_line: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | None:
        updated_expr = updated_line.body[0]
        assert isinstance(updated_expr, cst.Expr)
        operands, operators = _flatten_chain(original)
        if not any(self._drops(o) for o in operands):
            return updated_line
        new_operands, _ = _flatten_chain(updated_expr.value)
        kept: list[cst.BaseExpression] = []
        for operand, new_operand in zip(operands, new_operands, strict=True):
            if operand in self.a.dropped_operands:
                continue
            if isinstance(operand, cst.List) and isinstance(new_operand, cst.List):
                elements = [
                    new
                    for old, new in zip(operand.elements, new_operand.elements, strict=True)
                    if old.value not in self.a.dropped_operands
                ]
                if not elements:
                    continue
                elements[-1] = elements[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                new_operand = elements[0].value if len(elements) == 1 else new_operand.with_changes(elements=elements)
            kept.append(new_operand)
        if len(kept) < 2:
            return None
        expression: cst.BaseExpression = kept[0]
        for operand in kept[1:]:
            expression = cst.BinaryOperation(left=expression, operator=operators[0], right=operand)
        return updated_line.with_changes(body=[updated_expr.with_changes(value=expression)])

    def _drops(self, operand: cst.BaseExpression) -> bool:
        if operand in self.a.dropped_operands:
            return True
        return isinstance(operand, cst.List) and any(e.value in self.a.dropped_operands for e in operand.elements)


def _remove_statements(body: list[cst.BaseStatement], drop: list[bool], in_block: bool) -> list[cst.BaseStatement]:
    """``body`` without the dropped statements, keeping the blank lines that separated groups.

    Comments above a dropped statement go with it; the next statement keeps its own blank lines, or
    inherits the dropped one's, and loses them when it becomes the first statement of a block.
    """
    kept: list[cst.BaseStatement] = []
    inherited: list[cst.EmptyLine] | None = None
    for statement, dropped in zip(body, drop, strict=True):
        assert isinstance(statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
        if dropped:
            if inherited is None:
                inherited = [line for line in statement.leading_lines if line.comment is None]
            continue
        if inherited is not None:
            own = list(statement.leading_lines)
            if not kept and in_block:
                while own and own[0].comment is None:
                    own.pop(0)
            elif not (own and own[0].comment is None):
                own = inherited + own
            statement = statement.with_changes(leading_lines=own)
            inherited = None
        kept.append(statement)
    if not kept and in_block:
        kept.append(cst.SimpleStatementLine([cst.Pass()]))
    return kept


class _TidyImports(cst.CSTTransformer):
    """Drop the imports the migration left unused, merge ``airflow.sdk`` imports, and put
    SecretDockerOperator where the DockerOperator import it replaced was."""

    def __init__(self, unused: set[tuple[str, str | None, str | None]], place_secret_docker: bool):
        super().__init__()
        self.unused = unused
        self.place_secret_docker = place_secret_docker
        self.placed_secret_docker = False

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return updated_node.with_changes(body=self._tidy(list(updated_node.body), in_block=True))

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return updated_node.with_changes(body=self._tidy(list(updated_node.body), in_block=False))

    def _tidy(self, body: list[cst.BaseStatement], in_block: bool) -> list[cst.BaseStatement]:
        drop = [False] * len(body)
        sdk_import: int | None = None
        for index, statement in enumerate(body):
            node = _single_import(statement)
            if node is None:
                continue
            names = self._kept_names(node)
            if names is None:  # every name unused
                if self.place_secret_docker and not self.placed_secret_docker and _imports_docker_operator(node):
                    body[index] = statement.with_changes(body=[_SECRET_DOCKER_IMPORT])
                    self.placed_secret_docker = True
                else:
                    drop[index] = True
                continue
            if names is not node.names:
                node = node.with_changes(names=names)
                body[index] = statement.with_changes(body=[node])
            if isinstance(node, cst.ImportFrom) and node.module is not None and _dotted(node.module) == "airflow.sdk":
                if sdk_import is None:
                    sdk_import = index
                    continue
                first = _single_import(body[sdk_import])
                assert isinstance(first, cst.ImportFrom)
                assert not isinstance(first.names, cst.ImportStar)
                assert not isinstance(node.names, cst.ImportStar)
                merged = [
                    *first.names[:-1],
                    first.names[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
                ]
                merged += list(node.names)
                body[sdk_import] = body[sdk_import].with_changes(body=[first.with_changes(names=merged)])
                drop[index] = True
        return _remove_statements(body, drop, in_block)

    def _kept_names(self, node: cst.Import | cst.ImportFrom) -> Sequence[cst.ImportAlias] | None:
        if isinstance(node.names, cst.ImportStar):
            return node.names  # type: ignore[return-value]
        module = _dotted(node.module) if isinstance(node, cst.ImportFrom) and node.module is not None else None
        kept = []
        for alias in node.names:
            key = (
                (module, alias.evaluated_name, alias.evaluated_alias)
                if module
                else (alias.evaluated_name, None, alias.evaluated_alias)
            )
            if key not in self.unused:
                kept.append(alias)
        if not kept:
            return None
        if len(kept) == len(node.names):
            return node.names
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return kept


_SECRET_DOCKER_IMPORT = cst.ImportFrom(
    module=cst.parse_expression(SECRET_DOCKER_MODULE),  # type: ignore[arg-type]
    names=[cst.ImportAlias(name=cst.Name("SecretDockerOperator"))],
)


def _single_import(statement: cst.BaseStatement) -> cst.Import | cst.ImportFrom | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        node = statement.body[0]
        if isinstance(node, (cst.Import, cst.ImportFrom)) and not (isinstance(node, cst.ImportFrom) and node.relative):
            return node
    return None


def _imports_docker_operator(node: cst.Import | cst.ImportFrom) -> bool:
    return (
        isinstance(node, cst.ImportFrom)
        and node.module is not None
        and _dotted(node.module) == "airflow.providers.docker.operators.docker"
    )
