"""The call pattern of the peer package ``onepassword-secrets-backend`` 0.0.4, reproduced with the SDK.

For the DAG-parsing benchmark only: a new SDK client per lookup and ``client.get_item(title, vault)``
(vault by name: vault filter + item title filter + item by id = 3 requests), no cache. The peer is not
installed because its SDK pin conflicts with ours.
"""

from __future__ import annotations

from typing import Any

from airflow.secrets import BaseSecretsBackend
from onepasswordconnectsdk.client import new_client


class PeerStyleBackend(BaseSecretsBackend):
    def __init__(self, connect_host: str, connect_token: str, vault: str, variables_prefix: str = "airflow/variables"):
        super().__init__()
        self.host, self.token, self.vault, self.prefix = connect_host, connect_token, vault, variables_prefix

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        client = new_client(self.host, self.token)
        try:
            item: Any = client.get_item(f"{self.prefix}/{key}", self.vault)
        except Exception:
            return None
        return next((f.value for f in item.fields if f.label == "value"), None)

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        return None
