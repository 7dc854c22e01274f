"""``dts-airflow migrate``: move Airflow 2 DAG files onto Airflow 3 and this provider.

Every change is an edit of the concrete syntax tree (libcst), so comments and formatting survive.
What it cannot prove safe is left as it is and reported with the line and the reason. Running it
again on its own output changes nothing. The stages, one module each: ``analysis`` (decide),
``rewrite`` (apply), ``imports`` (tidy), ``report`` (tell); ``rules`` holds what moves where.
"""

from __future__ import annotations

import ast
import contextlib
import io
import multiprocessing
import os
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import MetadataWrapper, ScopeProvider

from airflow_dts_provider.authoring.folder import Progress, relative
from airflow_dts_provider.authoring.migrate.analysis import Analysis
from airflow_dts_provider.authoring.migrate.imports import TidyImports, unused_imports
from airflow_dts_provider.authoring.migrate.report import FileMigration, Finding, MigrationReport
from airflow_dts_provider.authoring.migrate.rewrite import Rewrite
from airflow_dts_provider.authoring.migrate.rules import (
    MODULE_MOVES,
    SDK_NAMES,
    SECRET_DOCKER_MODULE,
    UNUSED_MODEL_IMPORTS,
    template_findings,
)

__all__ = [
    "MODULE_MOVES",
    "SDK_NAMES",
    "FileMigration",
    "Finding",
    "MigrationReport",
    "migrate_folder",
    "migrate_source",
    "template_findings",
    "write",
]


def migrate_folder(folder: Path, files: Sequence[Path], progress: Progress | None = None) -> MigrationReport:
    """Migrate every file in memory; nothing is written (see :func:`write`).

    A file that cannot be read (an encoding its coding line does not match) or that is a symlink is
    left as it is and reported: one bad file never stops the run, and nothing outside the folder is
    written through a link.
    """
    read = [_read(path, folder) for path in files]
    jobs = [(text, relative(path, folder)) for path, (text, _, _) in zip(files, read, strict=True) if text is not None]
    results = []
    # Syntax-tree analysis is CPU-bound Python: spread a long folder over the cores.
    workers = min(os.cpu_count() or 1, 8) if len(jobs) >= 16 else 1
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            outcomes: Iterator[FileMigration] = iter(pool.map(_migrate_job, jobs, chunksize=4))
        else:
            outcomes = map(_migrate_job, jobs)
        for path, (text, encoding, problem) in zip(files, read, strict=True):
            if progress:
                progress.step(path)
            if text is None:
                outcome = FileMigration(relative(path, folder), "", "")
                outcome.left_for_you.append(Finding(outcome.path, 1, problem))
            else:
                outcome = next(outcomes)
                outcome.encoding = encoding
            results.append(outcome)
    before = _helper_importers(folder, files, {r.path: r.original for r in results})
    after = _helper_importers(folder, files, {r.path: r.migrated for r in results})
    unused = sorted(module for module, users in before.items() if users and not after.get(module))
    return MigrationReport(str(folder), results, unused)


def _read(path: Path, folder: Path) -> tuple[str | None, str, str]:
    """(text, encoding, problem): the text in the file's declared encoding (PEP 263), or None and why not."""
    if path.is_symlink():
        target = os.readlink(path)
        return None, "", f"a symlink (to {target}): left unchanged; migrate the file it points to where it lives"
    raw = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(encoding), encoding, ""
    except (SyntaxError, UnicodeDecodeError, LookupError) as err:
        reason = err.msg if isinstance(err, SyntaxError) else str(err)
        return None, "", f"cannot be read as Python source text ({reason}): left unchanged"


def _migrate_job(job: tuple[str, str]) -> FileMigration:
    return migrate_source(*job)


def write(report: MigrationReport, folder: Path) -> None:
    """Write the changed files, each in its own encoding; never through a link, never outside ``folder``."""
    root = folder.resolve()
    for result in report.changed_files:
        target = folder / result.path
        if target.is_symlink() or not target.resolve().is_relative_to(root):
            raise ValueError(f"{result.path}: not written, it is outside {folder} or a link")
        target.write_text(result.migrated, encoding=result.encoding)


def _helper_importers(folder: Path, files: Iterable[Path], sources: dict[str, str]) -> dict[str, set[str]]:
    """Modules in sub-packages of the folder (``utils.slack_operator``) -> files importing them."""
    helpers = {}
    for path in files:
        rel = Path(relative(path, folder))
        if len(rel.parts) > 1 and rel.name != "__init__.py":
            helpers[".".join(rel.with_suffix("").parts)] = rel.as_posix()
    users: dict[str, set[str]] = {module: set() for module in helpers}
    for importer, source in sources.items():
        for imported in _imported_modules(source):
            if imported in users and helpers[imported] != importer:
                users[imported].add(importer)
    return {helpers[m]: u for m, u in users.items()}


def _imported_modules(source: str) -> set[str]:
    """Every module (and ``module.name``) a source imports; read with ``ast``, which is fast."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def migrate_source(source: str, path: str = "<string>") -> FileMigration:
    """Migrate one module's source text."""
    result = FileMigration(path, source, source)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        result.left_for_you.append(Finding(path, err.raw_line, f"not valid Python, left unchanged: {err.message}"))
        return result
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    analysis = Analysis(path)
    wrapper.visit(analysis)
    result.left_for_you.extend(analysis.findings)
    if not analysis.has_work():
        return result
    unused_before = unused_imports(wrapper.module, wrapper.resolve(ScopeProvider))
    rewrite = Rewrite(analysis)
    tree = wrapper.module.visit(rewrite)
    unused_after = unused_imports(tree)
    # Newly unused, by the name bound: an import the rewrite moved to another module keeps its name, and one
    # nothing used before (a shim's re-export, listed in __all__ or not) stays.
    unused_names = {asname or name or module for module, name, asname in unused_before}
    unused = {key for key in unused_after if (key[2] or key[1] or key[0]) not in unused_names}
    unused |= {key for key in unused_after if (key[0], key[1]) in UNUSED_MODEL_IMPORTS}
    tidy = TidyImports(unused, place_secret_docker=bool(analysis.docker_calls))
    tree = tree.visit(tidy)
    needed = list(analysis.added_imports)
    if analysis.docker_calls and not tidy.placed_secret_docker:
        needed.append((SECRET_DOCKER_MODULE, "SecretDockerOperator", None))
    if needed:
        context = CodemodContext()
        for module_name, name, asname in needed:
            AddImportsVisitor.add_needed_import(context, module_name, name, asname)
        tree = AddImportsVisitor(context).transform_module(tree)
    result.migrated = tree.code
    result.sites_converted = len(analysis.docker_calls)
    result.force_pull_sites = len(analysis.force_pull_calls)
    result.changes = analysis.change_notes()
    return result
