"""The ``dts-airflow`` command: ``migrate``, ``lint`` and ``preflight`` over a DAG folder.

Exit codes: 0 fine; 1 lint errors or missing secrets; 2 the command could not run (bad path,
bad configuration). Progress goes to stderr; ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from airflow_dts_provider.authoring.folder import FolderError, LoadedFile, Progress, resolve_target

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Airflow 2 DAGs trigger plenty
    # Our report (or JSON) alone on stdout: whatever else writes there while DAG files are imported
    # and checked (the files themselves, Airflow's log renderer) goes to stderr.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        folder, files = resolve_target(args.folder)
        return int(args.run(args, folder, files, out))
    except FolderError as err:
        print(f"dts-airflow {args.command}: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        out.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dts-airflow", description="Keep an Airflow DAG folder healthy.")
    commands = parser.add_subparsers(dest="command", required=True)

    migrate = commands.add_parser("migrate", help="rewrite Airflow 2 DAG files for Airflow 3 and this provider")
    migrate.add_argument("folder", help="DAG folder (or one .py file)")
    migrate.add_argument("--write", action="store_true", help="write the changes (default: print a unified diff)")
    migrate.add_argument("--json", action="store_true", help="print the report as JSON (diffs included)")
    migrate.set_defaults(run=_migrate)

    lint = commands.add_parser("lint", help="check every DAG file against Airflow 3 and the team's conventions")
    lint.add_argument("folder", help="DAG folder (or one .py file)")
    lint.add_argument("--json", action="store_true", help="print the findings as JSON")
    lint.add_argument("--config", type=Path, help="pyproject.toml to read [tool.dts-airflow.lint] from")
    lint.set_defaults(run=_lint)

    preflight = commands.add_parser("preflight", help="check that every secret the DAGs declare exists")
    preflight.add_argument("folder", help="DAG folder (or one .py file)")
    preflight.add_argument("--json", action="store_true", help="print the checks as JSON")
    preflight.add_argument("--by-item", action="store_true", help="list, per 1Password item, the tasks that use it")
    preflight.set_defaults(run=_preflight)
    return parser


def _migrate(args: argparse.Namespace, folder: Path, files: list[Path], out: TextIO) -> int:
    from airflow_dts_provider.authoring.migrate import migrate_folder, write

    progress = Progress(len(files), "migrate", folder)
    report = migrate_folder(folder, files, progress)
    progress.finish()
    if args.write:
        write(report, folder)
    if args.json:
        data = report.as_dict()
        data["written"] = bool(args.write)
        data["diff"] = {f.path: f.diff() for f in report.changed_files}
        print(json.dumps(data, indent=2), file=out)
        return 0
    if not args.write:
        out.write("".join(f.diff() for f in report.changed_files))
    print(report.summary() + ("" if args.write else "\n(dry run: add --write to apply)"), file=sys.stderr)
    return 0


def _load(folder: Path, files: list[Path], verb: str) -> list[LoadedFile]:
    from airflow_dts_provider.authoring.folder import dag_files, load_dag_files

    targets = dag_files(folder, files)
    progress = Progress(len(targets), verb, folder)
    loaded = load_dag_files(folder, targets, progress)
    progress.finish()
    return loaded


def _lint(args: argparse.Namespace, folder: Path, files: list[Path], out: TextIO) -> int:
    from airflow_dts_provider.authoring.lint import ConfigError, LintConfig, lint

    try:
        config = LintConfig.find(folder, args.config)
    except ConfigError as err:
        print(f"dts-airflow lint: {err}", file=sys.stderr)
        return USAGE_ERROR
    loaded = _load(folder, files, "lint")
    report = lint(folder, loaded, config)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text(), file=out)
    return 1 if report.errors else 0


def _preflight(args: argparse.Namespace, folder: Path, files: list[Path], out: TextIO) -> int:
    from airflow_dts_provider.authoring.preflight import PreflightReport, check, collect

    loaded = _load(folder, files, "preflight")
    uses = collect(dag for result in loaded for dag in result.dags)
    report = PreflightReport(check(uses), {r.path: r.error for r in loaded if r.error})
    print(json.dumps(report.as_dict(args.by_item), indent=2) if args.json else report.text(args.by_item), file=out)
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
