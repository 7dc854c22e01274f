"""Apache Airflow provider for the DTS data team.

1Password secrets (hook, secrets backend, secret-safe Docker operator), Slack alerts and the
DAG Repositories admin page.
"""

from __future__ import annotations

#: The package version, and the only place it is written (pyproject.toml reads it; CHANGELOG.md says what
#: changed in each).
__version__ = "0.2.0"
