"""An auth manager for tests: Airflow's SimpleAuthManager, except that user ``partial`` may read
only the DAGs in PARTIAL_DAGS. It lets a test ask, over HTTP, whether a page shows a user only
what Airflow lets that user read (SimpleAuthManager's roles cannot say "some DAGs")."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

PARTIAL_USER = "partial"
PARTIAL_DAGS = frozenset({"example_slack_alerts", "secrets_backend_e2e"})


class PartialAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == PARTIAL_USER and (details is None or details.id not in PARTIAL_DAGS):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
