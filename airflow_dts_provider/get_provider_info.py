"""What Airflow's providers manager discovers (entry point ``apache_airflow_provider``).

Keep this dict valid against Airflow's ``provider_info.schema.json``: an invalid dict breaks the
providers manager for every provider, so tests/test_provider_info.py validates it.
"""

from __future__ import annotations

from typing import Any

from airflow_dts_provider import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-dts-provider",
        "name": "DTS",
        "description": "1Password secrets (hook, secrets backend, secret-safe Docker operator), Slack alerts "
        "and the DAG Repositories admin page for the DTS data team.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "1Password Connect",
                "external-doc-url": "https://developer.1password.com/docs/connect/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "1Password Connect",
                "python-modules": ["airflow_dts_provider.hooks.onepassword"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_dts_provider.hooks.onepassword.OnePasswordHook",
                "hook-name": "1Password Connect",
                "connection-type": "onepassword",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Connect server URL", "password": "Connect token"},
                    "placeholders": {
                        "host": "http://op-connect:8080",
                        "password": "1Password Connect access token",
                        "vault": "DTS Secrets (name or id)",
                        "cache_ttl": "300",
                        "timeout": "10",
                        "total_timeout": "30",
                        "max_retries": "3",
                    },
                },
                "conn-fields": {
                    "vault": {
                        "label": "Default vault",
                        "schema": {"type": ["string", "null"]},
                        "description": "Vault (name or id) for references that name none, e.g. opitem/opfield "
                        "dicts without opvault.",
                    },
                    "cache_ttl": {
                        "label": "Cache TTL (seconds)",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                        "description": "How long items and vault indexes are reused in a process. 0 disables.",
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Per-read timeout talking to Connect.",
                    },
                    "total_timeout": {
                        "label": "Total timeout per lookup (seconds)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Deadline for one lookup, every request and retry included; a slow or "
                        "hung Connect server cannot hold a task longer.",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
                        "description": "Retries with backoff on connection errors, 5xx and 429.",
                    },
                },
            }
        ],
    }
