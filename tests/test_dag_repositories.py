"""Admin > DAG Repositories: the plugin's app on a real API server, DAGs parsed into the metadata DB."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from airflow_dts_provider.plugins.dag_repositories import (
    DEFAULT_REPO_URL_TEMPLATE,
    collect_repositories,
    repository_url,
)
from tests.cdp import Browser
from tests.conftest import REPO, AirflowStack, _stop, free_port, require_binary, run_airflow, start_api_server
from tests.partial_auth_manager import PARTIAL_DAGS, PARTIAL_USER


@pytest.fixture(scope="module")
def parsed(airflow_stack: AirflowStack) -> AirflowStack:
    """Parse example_dags/ and tests/dags/ into the metadata DB (real DAG parsing)."""
    result = run_airflow(["dags", "reserialize"], airflow_stack.env)
    assert result.returncode == 0, result.stderr[-3000:]
    return airflow_stack


def test_json_groups_dags_by_repo_tag(parsed: AirflowStack) -> None:
    data = httpx.get(f"{parsed.api_url}/dts/repositories.json").json()
    repos = {r["name"]: r for r in data["repositories"]}
    ours = repos["airflow-dts-provider"]
    assert ours["url"] == "https://github.com/cityofaustin/airflow-dts-provider"
    dag_ids = [d["dag_id"] for d in ours["dags"]]
    assert dag_ids == sorted(dag_ids)
    assert {"example_onepassword_hook", "example_secret_docker", "example_slack_alerts"} <= set(dag_ids)
    slack = next(d for d in ours["dags"] if d["dag_id"] == "example_slack_alerts")
    assert slack["schedule"] == "0 6 * * *" and "slack" in slack["other_tags"]
    assert all(not t.startswith("repo:") for d in ours["dags"] for t in d["other_tags"])
    without = {d["dag_id"] for d in data["dags_without_repo"]}
    assert "secrets_backend_e2e" in without and not without & set(dag_ids)
    in_repos = {d["dag_id"] for r in data["repositories"] for d in r["dags"]}
    assert data["dag_count"] == len(without | in_repos)


def test_page_renders_inside_the_ui(parsed: AirflowStack) -> None:
    page = httpx.get(f"{parsed.api_url}/dts/repositories")
    assert page.status_code == 200
    assert '<a href="https://github.com/cityofaustin/airflow-dts-provider"' in page.text
    assert "DAGs without a repo: tag" in page.text and 'id="filter"' in page.text
    plugins = httpx.get(f"{parsed.api_url}/api/v2/plugins").json()["plugins"]
    view = next(p for p in plugins if p["name"] == "dts")["external_views"][0]
    assert (view["category"], view["href"], view["url_route"]) == ("admin", "/dts/repositories", "dag-repositories")


def test_constant_number_of_queries(parsed: AirflowStack) -> None:
    engine = create_engine(f"sqlite:///{parsed.home / 'airflow.db'}")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with Session(engine) as session:
        everything = collect_repositories(session, None, DEFAULT_REPO_URL_TEMPLATE)
        all_queries = len(statements)
        statements.clear()
        one = collect_repositories(session, {"example_onepassword_hook"}, DEFAULT_REPO_URL_TEMPLATE)
    assert everything["dag_count"] >= 10 and one["dag_count"] == 1
    assert all_queries == len(statements) == 3, "DAGs, tags, last runs: never one query per DAG"


def test_repository_links_encode_the_name() -> None:
    assert repository_url(DEFAULT_REPO_URL_TEMPLATE, "atd-knack") == "https://github.com/cityofaustin/atd-knack"
    assert (
        repository_url("https://git.example/{repo}", "team/odd name#1") == "https://git.example/team%2Fodd%20name%231"
    )


def test_readable_filter_hides_other_dags(parsed: AirflowStack) -> None:
    engine = create_engine(f"sqlite:///{parsed.home / 'airflow.db'}")
    with Session(engine) as session:
        data = collect_repositories(session, {"example_slack_alerts", "secrets_backend_e2e"}, "{repo}")
    shown = {d["dag_id"] for r in data["repositories"] for d in r["dags"]} | {
        d["dag_id"] for d in data["dags_without_repo"]
    }
    assert shown == {"example_slack_alerts", "secrets_backend_e2e"}


@pytest.fixture(scope="module")
def auth_api(parsed: AirflowStack) -> Iterator[str]:
    """A second API server on the same DB with real authentication: Airflow's Simple auth manager with a
    viewer user, and a user who may read only some DAGs (tests/partial_auth_manager.py)."""
    env = {
        **parsed.env,
        "PYTHONPATH": str(REPO),
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.partial_auth_manager.PartialAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"viewer:viewer,{PARTIAL_USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(parsed.home / "auth-passwords.json"),
    }
    passwords = {"viewer": "viewer-password", PARTIAL_USER: "partial-password"}
    (parsed.home / "auth-passwords.json").write_text(json.dumps(passwords))
    server, url = start_api_server(env, free_port(), parsed.home / "auth-api-server.log")
    yield url
    _stop(server)


def test_unauthenticated_requests_are_refused(auth_api: str) -> None:
    assert httpx.get(f"{auth_api}/dts/repositories.json").status_code == 401
    assert httpx.get(f"{auth_api}/dts/repositories").status_code == 401


def sign_in(api: str, username: str, password: str) -> str:
    token = httpx.post(f"{api}/auth/token", json={"username": username, "password": password})
    assert token.status_code == 201, token.text
    return str(token.json()["access_token"])


def test_a_user_sees_only_the_dags_airflow_lets_them_read(auth_api: str) -> None:
    jwt = sign_in(auth_api, PARTIAL_USER, "partial-password")
    data = httpx.get(f"{auth_api}/dts/repositories.json", headers={"Authorization": f"Bearer {jwt}"}).json()
    shown = {d["dag_id"] for r in data["repositories"] for d in r["dags"]} | {
        d["dag_id"] for d in data["dags_without_repo"]
    }
    assert shown == PARTIAL_DAGS and data["dag_count"] == len(PARTIAL_DAGS)
    page = httpx.get(f"{auth_api}/dts/repositories", cookies={"_token": jwt})
    assert page.status_code == 200 and "example_slack_alerts" in page.text
    assert "example_onepassword_hook" not in page.text and "secret_docker_e2e" not in page.text
    assert "<p>1 repository, 2 DAGs." in page.text
    assert '<a class="dag-link" href="../dags/example_slack_alerts" target="_top">' in page.text


def test_signed_in_viewer_sees_the_page(auth_api: str) -> None:
    jwt = sign_in(auth_api, "viewer", "viewer-password")
    by_header = httpx.get(f"{auth_api}/dts/repositories.json", headers={"Authorization": f"Bearer {jwt}"})
    assert by_header.status_code == 200 and by_header.json()["dag_count"] >= 10
    by_cookie = httpx.get(f"{auth_api}/dts/repositories", cookies={"_token": jwt})  # how the UI's iframe asks
    assert by_cookie.status_code == 200 and "airflow-dts-provider" in by_cookie.text


def test_headless_chromium_shows_the_page_in_the_ui(parsed: AirflowStack, tmp_path: Path) -> None:
    """The Airflow UI route for the Admin menu entry embeds our page (this stack signs everyone in as admin)."""
    chromium = require_binary("chromium")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000", "--window-size=1400,900",
    ]  # fmt: skip
    url = f"{parsed.api_url}/plugin/dag-repositories"
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'src="/dts/repositories"' in dom.stdout and ">Admin<" in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one (docs/dag-repositories.png is one)


def test_browser_logs_in_and_opens_admin_dag_repositories(auth_api: str, tmp_path: Path) -> None:
    """Headless Chromium signs in through the UI's login form, then opens Admin > DAG Repositories."""
    browser = Browser(require_binary("chromium"), tmp_path / "profile", free_port())
    try:
        browser.navigate(f"{auth_api}/plugin/dag-repositories")
        browser.type_into("input[name=username]", "viewer")
        browser.type_into("input[name=password]", "viewer-password")
        browser.wait_for("!document.querySelector('button[type=submit]').disabled")
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        browser.wait_for("document.cookie.includes('_token') || !document.querySelector('input[name=password]')")
        browser.navigate(f"{auth_api}/plugin/dag-repositories")
        frame_text = (
            "(() => { const f = document.querySelector('iframe[src=\"/dts/repositories\"]');"
            " return f && f.contentDocument && f.contentDocument.body ? f.contentDocument.body.innerText : ''; })()"
        )
        text = browser.wait_for(f"{frame_text}.includes('airflow-dts-provider') && {frame_text}")
        assert "DAGs without a repo: tag" in text
        assert browser.evaluate("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Admin'))")
        browser.screenshot(tmp_path / "dag-repositories.png")
        assert (tmp_path / "dag-repositories.png").stat().st_size > 20_000
        assert_page_follows_the_ui_theme(browser, f"{auth_api}/plugin/dag-repositories")
    finally:
        browser.close()


FRAME_BACKGROUND = (
    "(() => { const f = document.querySelector('iframe[src=\"/dts/repositories\"]');"
    " const body = f && f.contentDocument && f.contentDocument.querySelector('h1') && f.contentDocument.body;"
    " return body ? getComputedStyle(body).backgroundColor : ''; })()"
)
LIGHT, DARK = "rgb(255, 255, 255)", "rgb(24, 24, 27)"


def assert_page_follows_the_ui_theme(browser: Browser, ui_page: str) -> None:
    """The page takes the UI's theme when it loads, follows a switch live, and the browser's preference alone."""
    # the UI keeps the user's choice in localStorage "theme" (next-themes) and sets <html class="dark">
    browser.evaluate("localStorage.setItem('theme', 'dark')")
    browser.navigate(ui_page)
    browser.wait_for("document.documentElement.classList.contains('dark')")
    assert browser.wait_for(f"{FRAME_BACKGROUND} === {DARK!r} && {FRAME_BACKGROUND}") == DARK
    # the UI's theme switch changes the class on its <html>; the frame follows without a reload
    browser.evaluate("document.documentElement.classList.replace('dark', 'light')")
    assert browser.wait_for(f"{FRAME_BACKGROUND} === {LIGHT!r} && {FRAME_BACKGROUND}") == LIGHT
    # opened on its own with no stored choice: the browser's colour-scheme preference
    browser.evaluate("localStorage.removeItem('theme')")
    browser.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
    browser.navigate(ui_page.replace("/plugin/dag-repositories", "/dts/repositories"))
    body = "(document.querySelector('h1') ? getComputedStyle(document.body).backgroundColor : '')"
    assert browser.wait_for(f"{body} === {DARK!r} && {body}") == DARK


# -- fast: the grouping and both endpoints on Airflow's own tables in SQLite, no API server ---------------

DAY = "2026-01-0{}T06:00:00+00:00"


@pytest.fixture(scope="module")
def metadata() -> Iterator[Session]:
    """Airflow's metadata tables (its own models) in an in-memory SQLite database, with a few DAGs and runs."""
    import pendulum
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun

    import_all_models()
    # one connection shared with the endpoints' worker threads (TestClient runs sync endpoints in a pool)
    engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
    Base.metadata.create_all(engine)
    dags = {  # dag_id: (paused, schedule summary, owners, tags, stale)
        "alpha_etl": (False, "0 6 * * *", "transportation, data", ["repo:atd-knack", "etl"], False),
        "beta_sync": (True, "None", "", ["repo:atd-knack", "repo:atd-vz data"], False),
        "gamma_misc": (False, None, "data", ["misc"], False),
        "delta_bare": (False, "@daily", None, ["repo:"], False),
        "old_removed": (False, "@daily", "data", ["repo:atd-gone"], True),
        "eps_short": (False, None, "data", ["repo:x"], False),  # the shortest repository name
        "zeta_untagged": (False, None, "data", [], False),
    }
    with Session(engine) as session:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
        for dag_id, (paused, schedule, owners, tags, stale) in dags.items():
            session.add(
                DagModel(dag_id=dag_id, bundle_name="dags-folder", is_paused=paused, timetable_summary=schedule,
                         owners=owners, is_stale=stale)
            )  # fmt: skip
            session.flush()
            session.add_all(DagTag(name=tag, dag_id=dag_id) for tag in tags)
        runs = [("alpha_etl", "success", 1), ("alpha_etl", "failed", 3), ("alpha_etl", "success", 2),
                ("gamma_misc", "running", 4)]  # fmt: skip
        for n, (dag_id, state, day) in enumerate(runs):
            session.add(
                DagRun(dag_id=dag_id, run_id=f"run_{n}", run_type="manual", state=state,
                       run_after=pendulum.datetime(2026, 1, day, 6))
            )  # fmt: skip
        session.commit()
        yield session


def entry(dag_id: str, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {"dag_id": dag_id, "paused": False, "schedule": None, "owners": ["data"],
                                 "last_run_state": None, "last_run_at": None, "other_tags": []}  # fmt: skip
    return values | fields


ALPHA = entry("alpha_etl", schedule="0 6 * * *", owners=["transportation", "data"], last_run_state="failed",
              last_run_at=DAY.format(3), other_tags=["etl"])  # fmt: skip
BETA = entry("beta_sync", paused=True, owners=[])
GAMMA = entry("gamma_misc", last_run_state="running", last_run_at=DAY.format(4), other_tags=["misc"])
DELTA = entry("delta_bare", schedule="@daily", owners=[])  # an empty "repo:" names no repository


def test_grouping_by_repo_tag_on_airflows_tables(metadata: Session) -> None:
    """Latest run per DAG, paused/schedule/owners as the UI shows them, stale DAGs and an empty `repo:` left out."""
    assert collect_repositories(metadata, None, "https://git.example/{repo}") == {
        "repositories": [
            {"name": "atd-knack", "url": "https://git.example/atd-knack", "dags": [ALPHA, BETA]},
            {"name": "atd-vz data", "url": "https://git.example/atd-vz%20data", "dags": [BETA]},
            {"name": "x", "url": "https://git.example/x", "dags": [entry("eps_short")]},
        ],
        "dags_without_repo": [DELTA, GAMMA, entry("zeta_untagged")],
        "dag_count": 6,
    }


def test_only_readable_dags_count_anywhere(metadata: Session) -> None:
    assert collect_repositories(metadata, {"beta_sync", "gamma_misc"}, DEFAULT_REPO_URL_TEMPLATE) == {
        "repositories": [
            {"name": "atd-knack", "url": "https://github.com/cityofaustin/atd-knack", "dags": [BETA]},
            {"name": "atd-vz data", "url": "https://github.com/cityofaustin/atd-vz%20data", "dags": [BETA]},
        ],
        "dags_without_repo": [GAMMA],
        "dag_count": 2,
    }
    assert collect_repositories(metadata, set(), DEFAULT_REPO_URL_TEMPLATE)["dag_count"] == 0


@pytest.fixture
def repositories_app(metadata: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[Any]]]:
    """The plugin's app with its two Airflow dependencies supplied: the session above and a signed-in user.

    What the auth manager answers is the one stand-in: the real ones (simple, FAB, a partial one) are
    proven over HTTP above; here it records what it was asked.
    """
    from airflow.api_fastapi.common.db.common import _get_session
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_dts_provider.plugins.dag_repositories import create_app

    user, asked = object(), list[tuple[object, str]]()

    class AuthManager:
        def get_authorized_dag_ids(self, *, user: object, method: str) -> set[str]:
            asked.append((user, method))
            return {"alpha_etl", "delta_bare"}

    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", AuthManager)
    monkeypatch.setenv("AIRFLOW__DTS__REPO_URL_TEMPLATE", "https://code.example/{repo}/tree")
    app = create_app()
    app.dependency_overrides[_get_session] = lambda: metadata
    app.dependency_overrides[get_user] = lambda: user
    with TestClient(app) as client:
        yield client, asked
    assert asked and all(a == (user, "GET") for a in asked)


def test_json_endpoint_shows_what_the_auth_manager_allows(repositories_app: tuple[Any, list[object]]) -> None:
    client, _ = repositories_app
    response = client.get("/repositories.json")
    assert response.status_code == 200
    assert response.json() == {
        "repositories": [{"name": "atd-knack", "url": "https://code.example/atd-knack/tree", "dags": [ALPHA]}],
        "dags_without_repo": [DELTA],
        "dag_count": 2,
    }


def test_page_shows_what_the_auth_manager_allows(repositories_app: tuple[Any, list[object]]) -> None:
    client, _ = repositories_app
    page = client.get("/repositories")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "1 repository, 2 DAGs." in page.text
    assert '<a href="https://code.example/atd-knack/tree" target="_blank" rel="noopener">atd-knack</a>' in page.text
    assert '<a class="dag-link" href="../dags/alpha_etl" target="_top">alpha_etl</a>' in page.text
    assert "DAGs without a repo: tag <small>(1)</small>" in page.text and "delta_bare" in page.text
    assert "beta_sync" not in page.text and "gamma_misc" not in page.text


def test_the_plugin_builds_its_app_on_the_first_request_only() -> None:
    """Plugins load in every Airflow process; the FastAPI app (and its imports) only where a request comes."""
    from fastapi.testclient import TestClient

    from airflow_dts_provider.plugins.dts_plugin import URL_PREFIX, DtsPlugin

    (mounted,) = DtsPlugin.fastapi_apps
    (view,) = DtsPlugin.external_views
    assert mounted["url_prefix"] == URL_PREFIX and view["href"] == f"{URL_PREFIX}/repositories"
    lazy = type(mounted["app"])()
    client = TestClient(lazy)  # not as a context manager: a mounted app gets no lifespan events either
    assert lazy._app is None
    assert client.get("/no-such-page").status_code == 404  # any request builds it
    built = lazy._app
    assert built is not None and built.title == "DAG Repositories"
    assert client.get("/no-such-page").status_code == 404
    assert lazy._app is built


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_plugin_serves_no_api_docs(path: str) -> None:
    """Issue 30, finding 7: FastAPI's docs pages were served anonymously, Swagger loaded from a CDN."""
    from fastapi.testclient import TestClient

    from airflow_dts_provider.plugins.dag_repositories import create_app

    with TestClient(create_app()) as client:
        assert client.get(path).status_code == 404
