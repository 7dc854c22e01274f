"""Tools for DAG authors behind the ``dts-airflow`` command: migrate, lint, preflight."""
