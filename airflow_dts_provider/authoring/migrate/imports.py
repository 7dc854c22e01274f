"""Stage 3: tidy the imports a rewrite left: drop the unused ones, merge ``airflow.sdk`` imports, put
SecretDockerOperator where the DockerOperator import was."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import libcst as cst
from libcst.metadata import ImportAssignment, MetadataWrapper, ScopeProvider

from airflow_dts_provider.authoring.migrate.rewrite import remove_statements
from airflow_dts_provider.authoring.migrate.rules import SECRET_DOCKER_MODULE, dotted


def unused_imports(
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
                    unused.add((dotted(node.module), alias.evaluated_name, alias.evaluated_alias))
                elif isinstance(node, cst.Import):
                    unused.add((alias.evaluated_name, None, alias.evaluated_alias))
    return unused


class TidyImports(cst.CSTTransformer):
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
                    body[index] = statement.with_changes(body=[SECRET_DOCKER_IMPORT])
                    self.placed_secret_docker = True
                else:
                    drop[index] = True
                continue
            if names is not node.names:
                node = node.with_changes(names=names)
                body[index] = statement.with_changes(body=[node])
            if isinstance(node, cst.ImportFrom) and node.module is not None and dotted(node.module) == "airflow.sdk":
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
        return remove_statements(body, drop, in_block)

    def _kept_names(self, node: cst.Import | cst.ImportFrom) -> Sequence[cst.ImportAlias] | None:
        if isinstance(node.names, cst.ImportStar):
            return node.names  # type: ignore[return-value]
        module = dotted(node.module) if isinstance(node, cst.ImportFrom) and node.module is not None else None
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


SECRET_DOCKER_IMPORT = cst.ImportFrom(
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
        and dotted(node.module) == "airflow.providers.docker.operators.docker"
    )
