"""The provider's Airflow plugin (entry point ``airflow.plugins``).

It is registered now so deployments pick it up without a config change; it contributes nothing
yet. The Admin > DAG Repositories page (issue 7) is added here.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class DtsPlugin(AirflowPlugin):
    name = "dts"
