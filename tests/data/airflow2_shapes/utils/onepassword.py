import os
from datetime import timedelta

import onepasswordconnectsdk
from airflow.decorators import task
from onepasswordconnectsdk.client import Client, new_client

OP_CONNECT = os.getenv("OP_CONNECT")
OP_API_TOKEN = os.getenv("OP_API_TOKEN")
OP_VAULT_ID = os.getenv("OP_VAULT_ID")


def get_env_vars(required_secrets):
    """Fetch secrets from 1Password. The vault ID is added to each secret definition."""
    for secret in required_secrets.values():
        secret["opvault"] = OP_VAULT_ID
    client: Client = new_client(OP_CONNECT, OP_API_TOKEN)
    return onepasswordconnectsdk.load_dict(client, required_secrets)


def load_dict(required_secrets):
    """The one-argument form newer DAGs import: same as get_env_vars."""
    return get_env_vars(required_secrets)


@task(task_id="get_env_vars", execution_timeout=timedelta(seconds=30))
def get_env_vars_task(required_secrets):
    return get_env_vars(required_secrets)
