"""Exceptions raised by the provider's operators."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class ImagePullError(AirflowException):
    """Logging in to the registry or pulling the image failed; ``transient`` says whether waiting could help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class DockerEngineUnreachableError(AirflowException):
    """No Docker engine answers at the operator's ``docker_url``: the message says what to start."""
