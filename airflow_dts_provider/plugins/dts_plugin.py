"""The provider's Airflow plugin (entry point ``airflow.plugins``): Admin > DAG Repositories, and a listener
that keeps the 1Password Connect token out of what a task starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_dts_provider.plugins import task_environment

URL_PREFIX = "/dts"


class _AppOnFirstRequest:
    """An ASGI app that builds the real FastAPI app on its first request.

    Every Airflow process loads plugins (task processes too); importing the API-server side here
    would add about a second to each of them. Only the API server ever sends a request.
    """

    def __init__(self) -> None:
        self._app: Callable[..., Awaitable[None]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_dts_provider.plugins.dag_repositories import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class DtsPlugin(AirflowPlugin):
    name = "dts"
    listeners = [task_environment]
    fastapi_apps = [{"app": _AppOnFirstRequest(), "url_prefix": URL_PREFIX, "name": "DAG Repositories"}]
    external_views = [
        {
            "name": "DAG Repositories",
            "href": f"{URL_PREFIX}/repositories",
            "category": "admin",
            "url_route": "dag-repositories",
            "destination": "nav",
        }
    ]
