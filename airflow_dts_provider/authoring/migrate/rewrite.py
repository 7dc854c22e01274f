"""Stage 2: apply the edits the analysis decided, keyed by the original nodes."""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from airflow_dts_provider.authoring.migrate.analysis import Analysis, flatten_chain
from airflow_dts_provider.authoring.migrate.rules import AUTO_REMOVE


class Rewrite(cst.CSTTransformer):
    """Apply the edits Analysis decided, keyed by the original nodes."""

    def __init__(self, analysis: Analysis):
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
        return remove_statements(list(updated), drop, in_block)

    def _rebuild_chain(
        self, original: cst.BinaryOperation, updated_line: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | None:
        updated_expr = updated_line.body[0]
        assert isinstance(updated_expr, cst.Expr)
        operands, operators = flatten_chain(original)
        if not any(self._drops(o) for o in operands):
            return updated_line
        new_operands, _ = flatten_chain(updated_expr.value)
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


def remove_statements(body: list[cst.BaseStatement], drop: list[bool], in_block: bool) -> list[cst.BaseStatement]:
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
