"""The team's operators, in one place DAGs import from."""
from airflow.operators.bash import BashOperator
from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

__all__ = ["BashOperator", "DockerOperator", "TeamDockerOperator"]


class TeamDockerOperator(DockerOperator):
    """DockerOperator with the team's shared data mount and network."""

    def __init__(self, **kwargs):
        kwargs.setdefault("mounts", [Mount(source="/srv/dts-data", target="/data", type="bind")])
        kwargs.setdefault("network_mode", "dts")
        super().__init__(**kwargs)
