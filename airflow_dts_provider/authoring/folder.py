"""The DAG folder as the three ``dts-airflow`` commands see it: its files, and its DAGs imported one
file at a time the way Airflow's DAG processor does, with what each import cost and looked up."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules"}


class FolderError(Exception):
    """The path given cannot be used; the message is one line saying why."""


def resolve_target(path: str | Path) -> tuple[Path, list[Path]]:
    """(folder, every Python file in it) for a DAG folder or a single ``.py`` file."""
    target = Path(path).expanduser()
    if not target.exists():
        raise FolderError(f"{path}: no such file or folder")
    if target.is_file():
        if target.suffix != ".py":
            raise FolderError(f"{path}: not a Python file; give a DAG folder or a .py file")
        return target.parent.resolve(), [target.resolve()]
    folder = target.resolve()

    def skipped(path: Path) -> bool:
        return any(part in SKIPPED_DIRS or part.startswith(".") for part in path.relative_to(folder).parts[:-1])

    return folder, sorted(p for p in folder.rglob("*.py") if not skipped(p))


def relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def dag_files(folder: Path, files: Sequence[Path]) -> list[Path]:
    """The files Airflow would parse as DAG files (``.airflowignore`` respected), in ``files``' order."""
    from airflow.dag_processing.importers import get_importer_registry

    if len(files) == 1 and files[0].parent == folder and not (folder / ".airflowignore").exists():
        return list(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Airflow's ignore-file matcher warns about its own pathspec use
        listed = {Path(p).resolve() for p in get_importer_registry().list_dag_files(str(folder), safe_mode=False)}
    return [f for f in files if f in listed]


class Progress:
    """Progress on stderr: one rewritten line on a terminal, a line every 25 files otherwise."""

    def __init__(self, total: int, verb: str, folder: Path, stream: TextIO | None = None):
        self.total = total
        self.verb = verb
        self.folder = folder
        self.stream = stream or sys.stderr
        self.done = 0
        self.tty = self.stream.isatty()

    def step(self, path: Path) -> None:
        self.done += 1
        if self.tty:
            self.stream.write(f"\r\033[K{self.verb} [{self.done}/{self.total}] {relative(path, self.folder)}")
            self.stream.flush()
        elif self.done % 25 == 0 or self.done == self.total:
            self.stream.write(f"{self.verb}: {self.done}/{self.total} files\n")

    def finish(self) -> None:
        if self.tty and self.total:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ---------------------------------------------------------------------------------- importing


@dataclass
class LoadedFile:
    """One DAG file after import: its DAGs or its error, parse time and what it looked up."""

    path: str
    dags: list[Any] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    lookups: list[str] = field(default_factory=list)
    lookup_line: int = 1
    http_requests: list[str] = field(default_factory=list)
    network_connections: int = 0

    @property
    def connect_requests(self) -> list[str]:
        """Requests that went to a 1Password Connect API (``/v1/...``)."""
        return [r for r in self.http_requests if " /v1/" in r]


class _ImportWatch:
    """Counts, while a DAG file is imported, Variable/Connection lookups, HTTP requests and sockets opened.

    Network connections are seen through an audit hook (installed once; hooks cannot be removed), so
    they are counted whatever library opens them.
    """

    _hook_installed = False
    _current: _ImportWatch | None = None

    def __init__(self, path: Path | None = None) -> None:
        self.lookups: list[str] = []
        self.http_requests: list[str] = []
        self.network_connections = 0
        self.first_line: int | None = None  # the DAG file's line that made the first lookup or request
        self._path = str(path) if path is not None else None
        self._depth = 0

    def _note_line(self) -> None:
        """Remember which line of the DAG file (the innermost frame in it) is asking."""
        if self.first_line is not None or self._path is None:
            return
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename == self._path:
                self.first_line = frame.f_lineno
                return
            frame = frame.f_back  # type: ignore[assignment]

    @classmethod
    def _audit(cls, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect" and cls._current is not None:
            address = args[1] if len(args) > 1 else None
            if not isinstance(address, (str, bytes)):  # unix sockets (logging, the Docker engine) are not network
                cls._current.network_connections += 1

    @contextlib.contextmanager
    def watching(self) -> Iterator[_ImportWatch]:
        if not _ImportWatch._hook_installed:
            sys.addaudithook(_ImportWatch._audit)
            _ImportWatch._hook_installed = True
        patches = self._patches()
        patches.append((os, "_exit", _refusing_exit))
        originals = [(owner, name, inspect.getattr_static(owner, name)) for owner, name, _ in patches]
        for owner, name, wrapper in patches:
            setattr(owner, name, wrapper(getattr(owner, name)))
        _ImportWatch._current = self
        try:
            yield self
        finally:
            _ImportWatch._current = None
            for owner, name, original in originals:
                setattr(owner, name, original)

    def _patches(self) -> list[tuple[Any, str, Callable[[Any], Any]]]:
        import httpx
        from airflow.models.connection import Connection
        from airflow.models.variable import Variable
        from airflow.sdk.execution_time import context

        def lookup(kind: str) -> Callable[[Any], Any]:
            def wrap(original: Any) -> Any:
                def counted(*args: Any, **kwargs: Any) -> Any:
                    key = kwargs.get("key") or kwargs.get("conn_id") or (args[-1] if args else "?")
                    if self._depth == 0:
                        self.lookups.append(f"{kind}({key!r})")
                        self._note_line()
                    self._depth += 1
                    try:
                        return original(*args, **kwargs)
                    finally:
                        self._depth -= 1

                return counted

            return wrap

        def http(original: Any) -> Any:
            def counted(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
                self.http_requests.append(f"{request.method} {request.url.path}")
                self._note_line()
                return original(client, request, *args, **kwargs)

            return counted

        return [
            (context, "_get_variable", lookup("Variable.get")),
            (context, "_get_connection", lookup("Connection lookup")),
            # class attributes: the wrapper calls the bound original, so it is installed as a staticmethod
            (Variable, "get_variable_from_secrets", lambda f: staticmethod(lookup("Variable.get")(f))),
            (Connection, "get_connection_from_secrets", lambda f: staticmethod(lookup("Connection lookup")(f))),
            (httpx.Client, "send", http),
        ]


class DagFileExited(SystemExit):
    """A DAG file called ``os._exit`` while imported; raised instead, so the run (and its report) goes on."""


def _refusing_exit(original: Callable[[int], Any]) -> Callable[[int], Any]:
    """``os._exit`` for the importing process only: a child the DAG file forked still exits."""
    importing = os.getpid()

    def refuse(code: int = 0) -> Any:
        if os.getpid() != importing:
            return original(code)
        raise DagFileExited(f"the file called os._exit({code}) while it was parsed, which would end the DAG processor")

    return refuse


def load_dag_files(folder: Path, files: Sequence[Path], progress: Progress | None = None) -> list[LoadedFile]:
    """Import each DAG file as Airflow's DAG processor would, with ``folder`` on ``sys.path``.

    What the files print is captured and dropped, so it stays off the commands' own output.
    """
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    # The whole traceback, so an import error is reported at the DAG file's own line (Airflow keeps 2 frames).
    conf.set("core", "dagbag_import_error_traceback_depth", "100")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    bag = DagBag(dag_folder=str(folder), collect_dags=False, bundle_path=folder)
    printed = io.StringIO()
    results = []
    previous_disable = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # import errors are reported by us, not logged by the bag
    try:
        for path in files:
            if progress:
                progress.step(path)
            rel = relative(path, folder)
            watch = _ImportWatch(path)
            started = time.perf_counter()
            with watch.watching(), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                try:
                    dags = bag.process_file(str(path), only_if_updated=False, safe_mode=False)
                    error = bag.import_errors.pop(rel, None)
                except (Exception, SystemExit) as err:  # a DAG file calling sys.exit() must not end the run
                    dags, error = [], f"{type(err).__name__}: {err}"
            loaded = LoadedFile(rel, list(dags), _redact(error) if error else None, time.perf_counter() - started)
            loaded.lookups, loaded.http_requests = watch.lookups, watch.http_requests
            loaded.lookup_line = watch.first_line or 1
            loaded.network_connections = watch.network_connections
            results.append(loaded)
    finally:
        logging.disable(previous_disable)
    return results


def _redact(text: str) -> str:
    """Error text can quote what a DAG file fetched: pass it through Airflow's secret masker."""
    from airflow.sdk._shared.secrets_masker import redact

    return str(redact(text))
