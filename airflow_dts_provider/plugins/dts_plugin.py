"""The provider's Airflow plugin: Admin > DAG Repositories (entry point ``airflow.plugins``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/dts"


def _fastapi_apps() -> list[dict[str, object]]:
    from airflow_dts_provider.plugins.dag_repositories import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "DAG Repositories"}]


class DtsPlugin(AirflowPlugin):
    name = "dts"
    fastapi_apps = _fastapi_apps()
    external_views = [
        {
            "name": "DAG Repositories",
            "href": f"{URL_PREFIX}/repositories",
            "category": "admin",
            "url_route": "dag-repositories",
            "destination": "nav",
        }
    ]
