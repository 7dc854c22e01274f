"""What Airflow's providers manager discovers (entry point ``apache_airflow_provider``).

Keep this dict valid against Airflow's ``provider_info.schema.json``: an invalid dict breaks the
providers manager for every provider, so tests/test_provider_info.py validates it.
"""

from __future__ import annotations

from typing import Any

from airflow_dts_provider import __version__

#: The ``[dts]`` options the package reads (tests/test_provider_info.py finds every ``conf.get("dts", ...)``
#: in the code and checks it is declared here with the same default). Kept in this light module: the
#: providers manager imports it in every Airflow process.
CONFIG: dict[str, Any] = {
    "dts": {
        "description": "Settings of the DTS provider (airflow-dts-provider) that apply to the whole installation.",
        "options": {
            "repo_url_template": {
                "description": "Link for each repository on the Admin > DAG Repositories page; ``{repo}`` is "
                "the name from a DAG's ``repo:<name>`` tag (URL-encoded).",
                "version_added": "0.1.0",
                "type": "string",
                "example": "https://gitlab.example.org/dts/{repo}",
                "default": "https://github.com/cityofaustin/{repo}",
            },
            "slack_alert_environments": {
                "description": "Comma-separated ``ENVIRONMENT`` values in which the Slack drop-ins "
                "(task_fail_slack_alert, task_fail_slack_alert_critical, task_success_slack_alert) send; "
                "``*`` sends everywhere. SlackNotifier itself uses its ``environments`` argument.",
                "version_added": "0.2.0",
                "type": "string",
                "example": "production,staging",
                "default": "production",
            },
            "task_environment_keeps_connect_token": {
                "description": "Leave the 1Password Connect token variables (``OP_CONNECT_TOKEN``, "
                "``OP_API_TOKEN``) in a task's environment. By default they are moved out when the task starts, "
                "so programs it runs (a BashOperator's shell) do not inherit them; the task's own 1Password "
                "lookups still find the token.",
                "version_added": "0.2.0",
                "type": "boolean",
                "example": "True",
                "default": "False",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-dts-provider",
        "name": "DTS",
        "description": "1Password secrets (hook, secrets backend, secret-safe Docker operator), Slack alerts "
        "and the DAG Repositories admin page for the DTS data team.",
        "versions": [__version__],
        "secrets-backends": ["airflow_dts_provider.secrets.onepassword.OnePasswordBackend"],
        "notifications": ["airflow_dts_provider.notifications.slack.SlackNotifier"],
        "config": CONFIG,
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
