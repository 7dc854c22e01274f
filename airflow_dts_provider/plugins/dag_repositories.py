"""Admin > DAG Repositories: which repository feeds which DAGs, from the team's ``repo:<name>`` tag.

A FastAPI app mounted on the API server (works with any auth manager). Read-only; a constant number
of SQL queries however many DAGs there are; only DAGs the auth manager lets the user read.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

REPO_TAG_PREFIX = "repo:"
DEFAULT_REPO_URL_TEMPLATE = "https://github.com/cityofaustin/{repo}"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)


def repo_url_template() -> str:
    from airflow.configuration import conf

    return conf.get("dts", "repo_url_template", fallback=DEFAULT_REPO_URL_TEMPLATE)


def repository_url(url_template: str, name: str) -> str:
    """The link for a repository: the template with the name URL-encoded (a tag may hold any character)."""
    return url_template.format(repo=quote(name, safe=""))


def collect_repositories(session: Session, readable: set[str] | None, url_template: str) -> dict[str, Any]:
    """Group active DAGs by their ``repo:`` tags in three queries (DAGs, tags, last runs)."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagrun import DagRun

    dag_query = select(DagModel.dag_id, DagModel.is_paused, DagModel.timetable_summary, DagModel.owners).where(
        DagModel.is_stale.is_(False)
    )
    if readable is not None:
        dag_query = dag_query.where(DagModel.dag_id.in_(readable))
    dags = {row.dag_id: row for row in session.execute(dag_query)}

    tags: dict[str, list[str]] = defaultdict(list)
    tag_query = select(DagTag.dag_id, DagTag.name).where(DagTag.dag_id.in_(select(dag_query.subquery().c.dag_id)))
    for dag_id, name in session.execute(tag_query):
        tags[dag_id].append(name)

    latest = (
        select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
        .where(DagRun.dag_id.in_(select(dag_query.subquery().c.dag_id)))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    last_runs = {
        row.dag_id: row
        for row in session.execute(
            select(DagRun.dag_id, DagRun.state, DagRun.run_after).join(
                latest, (DagRun.dag_id == latest.c.dag_id) & (DagRun.run_after == latest.c.run_after)
            )
        )
    }

    repos: dict[str, list[dict[str, Any]]] = defaultdict(list)
    without: list[dict[str, Any]] = []
    for dag_id in sorted(dags):
        row = dags[dag_id]
        run = last_runs.get(dag_id)
        dag_tags = sorted(tags.get(dag_id, []))
        entry = {
            "dag_id": dag_id,
            "paused": bool(row.is_paused),
            "schedule": None if row.timetable_summary in (None, "None") else row.timetable_summary,
            "owners": [o.strip() for o in (row.owners or "").split(",") if o.strip()],
            "last_run_state": str(run.state) if run is not None and run.state is not None else None,
            "last_run_at": run.run_after.isoformat() if run is not None and run.run_after else None,
            "other_tags": [t for t in dag_tags if not t.startswith(REPO_TAG_PREFIX)],
        }
        repo_names = [t[len(REPO_TAG_PREFIX) :] for t in dag_tags if t.startswith(REPO_TAG_PREFIX) and len(t) > 5]
        if not repo_names:
            without.append(entry)
        for repo in repo_names:
            repos[repo].append(entry)
    return {
        "repositories": [
            {"name": name, "url": repository_url(url_template, name), "dags": repos[name]} for name in sorted(repos)
        ],
        "dags_without_repo": without,
        "dag_count": len(dags),
    }


def create_app() -> FastAPI:
    # No /docs, /redoc or /openapi.json: FastAPI serves them to anyone, and its Swagger page loads
    # scripts from a CDN on Airflow's own origin. The two routes are documented in README.
    app = FastAPI(
        title="DAG Repositories",
        description="DAGs grouped by their repo: tag (read-only)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def readable_dag_ids(user: Any) -> set[str]:
        from airflow.api_fastapi.app import get_auth_manager

        return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))

    @app.get("/repositories.json")
    def repositories_json(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        return collect_repositories(session, readable_dag_ids(user), repo_url_template())

    @app.get("/repositories", response_class=HTMLResponse)
    def repositories_page(request: Request, user: GetUserDep, session: SessionDep) -> HTMLResponse:
        data = collect_repositories(session, readable_dag_ids(user), repo_url_template())
        return HTMLResponse(_templates.get_template("dag_repositories.html").render(**data))

    return app
