"""Benchmark: DAG Repositories page and JSON at 100, 1,000 and 5,000 DAGs (60 repos, one run each).

A fresh SQLite metadata DB (``airflow db migrate``) is filled with bulk rows (dag, dag_tag, dag_run);
then the view's data collection, the JSON serialisation and the HTML rendering are timed (median of 5)
and the SQL statements counted. Goal from the issue: 5,000 DAGs render in under 0.5 s; query count
constant. Run: ``.venv/bin/python bench/bench_dag_repositories.py``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from airflow_dts_provider.plugins.dag_repositories import DEFAULT_REPO_URL_TEMPLATE, _templates, collect_repositories

REPOS = 60


def fill(engine, dags: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with engine.begin() as db:
        db.execute(text("INSERT OR IGNORE INTO dag_bundle (name, active) VALUES ('bench', 1)"))
        db.execute(
            text(
                "INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, timetable_summary, owners,"
                " partition_mapper_info, max_active_tasks, max_consecutive_failed_dag_runs,"
                " has_task_concurrency_limits) VALUES (:d, :p, 0, 'bench', 'cron', '0 6 * * *', 'dts', '{}', 16, 0, 0)"
            ),
            [{"d": f"dag_{n:05d}", "p": n % 3 == 0} for n in range(dags)],
        )
        db.execute(
            text("INSERT INTO dag_tag (name, dag_id) VALUES (:t, :d)"),
            [{"t": f"repo:repo-{n % REPOS:02d}", "d": f"dag_{n:05d}"} for n in range(dags) if n % 50]
            + [{"t": "knack", "d": f"dag_{n:05d}"} for n in range(0, dags, 2)],
        )
        db.execute(
            text(
                "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state)"
                " VALUES (:d, :r, 'scheduled', :a, 'success')"
            ),
            [{"d": f"dag_{n:05d}", "r": f"scheduled__{n}", "a": now - timedelta(minutes=n)} for n in range(dags)],
        )


def main() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    print(f"{'DAGs':>6}{'queries':>9}{'collect ms':>12}{'JSON ms':>10}{'page ms':>10}")
    for dags in (100, 1_000, 5_000):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}  # fmt: skip
            subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, check=True)
            engine = create_engine(f"sqlite:///{home}/airflow.db")
            fill(engine, dags)
            statements: list[str] = []

            def count(*args: object, log: list[str] = statements) -> None:
                log.append(str(args[2]))

            event.listen(engine, "before_cursor_execute", count)
            collect, as_json, page = [], [], []
            for _ in range(5):
                statements.clear()
                with Session(engine) as session:
                    started = time.perf_counter()
                    data = collect_repositories(session, None, DEFAULT_REPO_URL_TEMPLATE)
                    collect.append(time.perf_counter() - started)
                queries = len(statements)
                started = time.perf_counter()
                json.dumps(data)
                as_json.append(collect[-1] + time.perf_counter() - started)
                started = time.perf_counter()
                _templates.get_template("dag_repositories.html").render(**data)
                page.append(collect[-1] + time.perf_counter() - started)
            assert data["dag_count"] == dags
            assert len(data["repositories"]) <= REPOS
            ms = [statistics.median(x) * 1000 for x in (collect, as_json, page)]
            print(f"{dags:>6}{queries:>9}{ms[0]:>12.1f}{ms[1]:>10.1f}{ms[2]:>10.1f}")


if __name__ == "__main__":
    main()
