"""A listener that moves the 1Password Connect token out of a task's environment as the task starts.

Compose gives every Airflow container ``OP_API_TOKEN`` (the secrets backend needs it in every
process), so without this a BashOperator running ``env``, or any program a task starts, inherits the
token. The task process keeps it for its own lookups (``ConnectSettings.from_env`` still finds it);
the DAG file has been parsed by then, so module-level ``os.getenv("OP_API_TOKEN")`` of Airflow 2 DAGs
still reads it. ``[dts] task_environment_keeps_connect_token = True`` turns this off.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from airflow_dts_provider._onepassword.settings import take_token_from_environment

log = logging.getLogger(__name__)

#: ``[dts] task_environment_keeps_connect_token``'s default (declared in get_provider_info).
KEEP_DEFAULT = "False"


def keeps_token() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("dts", "task_environment_keeps_connect_token", fallback=KEEP_DEFAULT)


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    if keeps_token():
        return
    taken = take_token_from_environment()
    if taken:
        log.info("1Password Connect token moved out of the task's environment (%s)", ", ".join(taken))
