"""Read 1Password secrets inside a task with OnePasswordHook.

Run it against the dev vault (see README): trigger it in the ``scripts/dev`` UI, or from another
terminal ``scripts/dev shell airflow dags test example_onepassword_hook``.
The value is printed to show the log masker at work: the log line reads ``***``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_dts_provider.hooks.onepassword import OnePasswordHook

REQUIRED_SECRETS = {
    "KNACK_APP_ID": {"opitem": "Knack Data Tracker", "opfield": "prod.appId"},
    "KNACK_API_KEY": {"opitem": "Knack Data Tracker", "opfield": "prod.apiKey"},
    "SOCRATA_TOKEN": "op://DTS Dev/Socrata Open Data/appToken",
}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    tags=["example", "1password", "repo:airflow-dts-provider"],
    params={
        "vault": Param("", type="string", description="vault name or id; empty = the connection's default"),
        "item": Param("Socrata Open Data", type="string", description="1Password item title or id"),
        "field": Param("password", type="string", description="'section.field', '.field' or 'field'"),
        "digest_file": Param("", type="string", description="if set, write the value's sha256 here"),
    },
)
def example_onepassword_hook() -> None:
    @task
    def read_one_field(params: dict[str, Any] | None = None) -> None:
        assert params is not None
        value = OnePasswordHook().get_field(params["item"], params["field"], vault=params["vault"] or None)
        print(f"fetched {params['item']}/{params['field']}: {value}")  # the masker prints ***
        if params["digest_file"]:
            Path(params["digest_file"]).write_text(hashlib.sha256(value.encode()).hexdigest())

    @task
    def read_required_secrets() -> list[str]:
        values = OnePasswordHook().resolve_many(REQUIRED_SECRETS)
        return sorted(values)  # names only: values never go to XCom

    read_one_field()
    read_required_secrets()


example_onepassword_hook()
