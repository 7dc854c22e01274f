"""Apache Airflow provider for the DTS data team.

1Password secrets (hook, secrets backend, secret-safe Docker operator), Slack alerts and the
DAG Repositories admin page.
"""

from __future__ import annotations

__version__ = "0.1.0"
