"""What moves where: Airflow 2 names and modules and their Airflow 3 homes, and template variables Airflow 3
removed. Data, plus the two small readers every stage uses."""

from __future__ import annotations

import re

import libcst as cst

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
#: Imported for type hints of Airflow 2 callbacks and unused once those are gone: dropped when nothing uses them.
UNUSED_MODEL_IMPORTS = {
    ("airflow.models", "DagRun"),
    ("airflow.models", "TaskInstance"),
    ("airflow.models.dagrun", "DagRun"),
    ("airflow.models.taskinstance", "TaskInstance"),
}
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
#: The operator migrate converts; a subclass (the team's own, with its mounts or network) is reported instead.
DOCKER_OPERATORS = {
    "airflow.operators.docker_operator.DockerOperator",
    "airflow.providers.docker.operators.docker.DockerOperator",
}
#: The SDK's ``load_dict(client, config)``; any other ``load_dict`` is the team's ``load_dict(required_secrets)``,
#: which (like its ``get_env_vars``) set every entry's ``opvault`` to ``OP_VAULT_ID`` first.
SDK_LOAD_DICT = {"onepasswordconnectsdk.load_dict", "onepasswordconnectsdk.config.load_dict"}
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


def dotted(node: cst.BaseExpression | cst.Attribute | cst.Name) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{dotted(node.value)}.{node.attr.value}"
    return ""


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
