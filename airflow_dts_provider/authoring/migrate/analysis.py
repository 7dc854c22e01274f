"""Stage 1: read a module's tree and decide every edit (which Docker tasks take their secrets directly,
which imports move, which arguments are renamed) and every site left for a person, with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import (
    Assignment,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from airflow_dts_provider.authoring.migrate.report import Finding
from airflow_dts_provider.authoring.migrate.rules import (
    AUTO_REMOVE,
    DAG_FACTORIES,
    DOCKER_OPERATORS,
    MODULE_MOVES,
    SDK_LOAD_DICT,
    SDK_NAMES,
    SLACK_HELPERS,
    SLACK_MODULE,
    TASK_DECORATORS,
    VARIABLE_GET,
    dotted,
    template_findings,
)


@dataclass
class SecretsTask:
    """``name = get_env_vars_task(X)`` (or a local ``@task`` returning ``load_dict(client, X)`` or the team's
    ``load_dict(X)``). ``overwrites_vault``: the old helper set every entry's ``opvault`` to ``OP_VAULT_ID``."""

    statement: cst.SimpleStatementLine
    target: cst.Name
    secrets: cst.BaseExpression
    line: int
    overwrites_vault: bool = False
    docker_calls: list[cst.Call] = field(default_factory=list)
    chain_operands: list[cst.Name] = field(default_factory=list)
    blockers: list[tuple[int, str]] = field(default_factory=list)


class Analysis(cst.CSTVisitor):
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
        self._local_tasks: dict[cst.FunctionDef, tuple[cst.BaseExpression | None, int | None, bool]] = {}
        self.force_pull_calls: set[cst.Call] = set()
        self._overwrites_vault = False
        self._secrets_tasks: list[SecretsTask] = []
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
        if any(arg not in converted or is_false(arg) for arg in self.auto_remove_args):
            notes.add("auto_remove=True/False -> 'success'/'never'")
        if self.schedule_args:
            notes.add("schedule_interval= -> schedule=")
        if self.default_var_args:
            notes.add("Variable.get(default_var=) -> default=")
        return sorted(notes)

    # ----------------------------------------------------------------- imports
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = dotted(alias.name)
            if name in MODULE_MOVES or name.startswith("airflow.contrib") or name.endswith("slack_operator"):
                self.left(node, f"'import {name}': import the names you use from their new module instead")

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.module is None or node.relative or isinstance(node.names, cst.ImportStar):
            return
        module = dotted(node.module)
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
        found = _returned_load_dict(node, self)
        if found is None:
            return
        returned, overwrites_vault = found
        params = [p.name.value for p in node.params.params]
        if isinstance(returned, cst.Name) and returned.value in params:
            self._local_tasks[node] = (None, params.index(returned.value), overwrites_vault)
        else:
            self._local_tasks[node] = (returned, None, overwrites_vault)

    # ----------------------------------------------------------------- calls and strings
    def docker_kind(self, call: cst.CSTNode) -> str | None:
        """``"exact"`` for DockerOperator itself, ``"subclass"`` for another ``*DockerOperator`` (a team's
        subclass), None otherwise (SecretDockerOperator included: already migrated)."""
        if not isinstance(call, cst.Call):
            return None
        names = self.qualnames(call.func)
        if names & DOCKER_OPERATORS:
            return "exact"
        if any(n.endswith("DockerOperator") and not n.endswith("SecretDockerOperator") for n in names):
            return "subclass"
        return None

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if any(self.qualnames(base.value) & DOCKER_OPERATORS for base in node.bases):
            self.left(
                node,
                f"class {node.name.value} extends DockerOperator: migrate converts DockerOperator itself only; to give "
                "its tasks secrets from 1Password, make it extend SecretDockerOperator and pass secrets=",
            )

    def visit_Call(self, node: cst.Call) -> None:
        names = self.qualnames(node.func)
        if self.docker_kind(node) is not None:
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
        self._overwrites_vault = False
        secrets = self._secrets_argument(node.value)
        if secrets is None:
            return
        statement = self.get_metadata(ParentNodeProvider, node)
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            self.left(node, "get_env_vars_task(...) shares its line with other statements: split it first")
            return
        target = node.targets[0].target
        task = SecretsTask(statement, target, secrets, self.line(node), overwrites_vault=self._overwrites_vault)
        self._secrets_tasks.append(task)

    def _secrets_argument(self, call: cst.Call) -> cst.BaseExpression | None:
        names = self.qualnames(call.func)
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        keyword = {a.keyword.value: a.value for a in call.args if a.keyword}
        if any(n.endswith("get_env_vars_task") for n in names):
            self._overwrites_vault = True
            return positional[0] if len(positional) == 1 else keyword.get("required_secrets")
        if isinstance(call.func, cst.Name):
            for definition, (secrets, index, overwrites_vault) in self._local_tasks.items():
                if self._refers_to(call.func, definition):
                    self._overwrites_vault = overwrites_vault
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

    def _trace(self, task: SecretsTask) -> None:
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
            if any(a.keyword and a.keyword.value == "force_pull" and not is_false(a) for a in call.args):
                self.force_pull_calls.add(call)
        if task.overwrites_vault:
            self._report_stale_vaults(task)
        self.dropped_operands.update(task.chain_operands)

    def _report_stale_vaults(self, task: SecretsTask) -> None:
        """Entries naming a vault by a literal: the old helper replaced it with OP_VAULT_ID, SecretDockerOperator
        reads the vault named, which may be another one in production (a copied "DTS Dev")."""
        secrets = self._literal_dict(task.secrets)
        if secrets is None:
            return
        for element in secrets.elements:
            if not isinstance(element, cst.DictElement) or not isinstance(element.value, cst.Dict):
                continue
            for entry in element.value.elements:
                if not isinstance(entry, cst.DictElement) or not isinstance(entry.key, cst.SimpleString):
                    continue
                if entry.key.evaluated_value == "opvault" and isinstance(entry.value, cst.SimpleString):
                    name = str(element.key.value) if isinstance(element.key, cst.SimpleString) else "an entry"
                    self.left(
                        entry,
                        f"{name}: 'opvault': {entry.value.value} was replaced with OP_VAULT_ID by the old "
                        "get_env_vars; SecretDockerOperator reads the vault named here. Remove it to read the "
                        "connection's default vault, or keep it if this vault is meant",
                    )

    def _literal_dict(self, node: cst.BaseExpression) -> cst.Dict | None:
        """The dict literal a secrets expression is (or the one module-level name bound once to it)."""
        if isinstance(node, cst.Dict):
            return node
        if not isinstance(node, cst.Name):
            return None
        scope = self.get_metadata(ScopeProvider, node, None)
        if scope is None:
            return None
        bound = [a for a in scope[node.value] if isinstance(a, Assignment)]
        if len(bound) != 1:
            return None
        target = self.get_metadata(ParentNodeProvider, bound[0].node, None)
        if not isinstance(target, cst.AssignTarget):
            return None
        statement = self.get_metadata(ParentNodeProvider, target, None)
        if isinstance(statement, cst.Assign) and isinstance(statement.value, cst.Dict):
            return statement.value
        return None

    def _classify(self, task: SecretsTask, node: cst.CSTNode) -> None:
        parent = self.get_metadata(ParentNodeProvider, node)
        if isinstance(parent, cst.Arg) and parent.keyword is not None:
            call = self.get_metadata(ParentNodeProvider, parent)
            kind = self.docker_kind(call) if parent.keyword.value == "environment" else None
            if kind == "subclass":
                assert isinstance(call, cst.Call)
                name = dotted(call.func) or "it"
                reason = f"goes to {name}, a DockerOperator subclass (migrate converts DockerOperator only)"
                task.blockers.append((self.line(call), reason))
                return
            if kind == "exact":
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

    def _mutated_after(self, task: SecretsTask) -> int | None:
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


def flatten_chain(node: cst.BaseExpression) -> tuple[list[cst.BaseExpression], list[cst.BaseBinaryOp]]:
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


def _returned_load_dict(function: cst.FunctionDef, analysis: Analysis) -> tuple[cst.BaseExpression, bool] | None:
    """(X, overwrites_vault) when the function's body is ``... return load_dict(client, X)`` (the SDK's) or
    ``return load_dict(X)`` (the team's helper, which set every entry's ``opvault`` first)."""
    found: list[tuple[cst.BaseExpression, bool]] = []

    class Returns(cst.CSTVisitor):
        def visit_Return(self, node: cst.Return) -> None:
            value = node.value
            if not isinstance(value, cst.Call):
                return
            names = analysis.qualnames(value.func)
            if not any(n.endswith("load_dict") for n in names):
                return
            args = [a.value for a in value.args if a.keyword is None and not a.star]
            keyword = {a.keyword.value: a.value for a in value.args if a.keyword}
            if names & SDK_LOAD_DICT:
                config = args[1] if len(args) > 1 else keyword.get("config")
                overwrites_vault = False
            else:
                config = args[0] if len(args) == 1 else keyword.get("required_secrets")
                overwrites_vault = True
            if config is not None:
                found.append((config, overwrites_vault))

    function.body.visit(Returns())
    return found[0] if len(found) == 1 else None


def _mentions_os_environ(node: cst.CSTNode) -> bool:
    class Find(cst.CSTVisitor):
        hit = False

        def visit_Attribute(self, attribute: cst.Attribute) -> None:
            if dotted(attribute) == "os.environ":
                Find.hit = True

    node.visit(Find())
    return Find.hit


def is_false(arg: cst.Arg) -> bool:
    return isinstance(arg.value, cst.Name) and arg.value.value == "False"
