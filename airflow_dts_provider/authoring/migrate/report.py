"""What a migration did and left: per file (the new text, its diff, the findings) and for the folder."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    """A site migrate left for a person."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class FileMigration:
    path: str
    original: str
    migrated: str
    sites_converted: int = 0
    force_pull_sites: int = 0
    encoding: str = "utf-8"
    changes: list[str] = field(default_factory=list)
    left_for_you: list[Finding] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.migrated != self.original

    def diff(self) -> str:
        return unified_diff(self.original, self.migrated, f"a/{self.path}", f"b/{self.path}")


def unified_diff(before: str, after: str, from_name: str, to_name: str, context: int = 3) -> str:
    """A unified diff as GNU diff makes it: ``difflib.unified_diff`` without its "autojunk" heuristic.

    For a text over 200 lines difflib treats lines that occur often (blank lines, a closing ``)``) as
    junk and cannot anchor on them, so unchanged lines show as removed and added again: 328 diff
    lines for one 12-task file where GNU diff needs 239.
    """
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    out: list[str] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        if not out:
            out += [f"--- {from_name}\n", f"+++ {to_name}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in out)


def _range(start: int, stop: int) -> str:
    """``start,length`` of a hunk (1-based; an empty range names the line before it)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


@dataclass
class MigrationReport:
    folder: str
    files: list[FileMigration]
    unused_helpers: list[str]

    @property
    def changed_files(self) -> list[FileMigration]:
        return [f for f in self.files if f.changed]

    @property
    def left_for_you(self) -> list[Finding]:
        return [finding for f in self.files for finding in f.left_for_you]

    @property
    def sites_converted(self) -> int:
        return sum(f.sites_converted for f in self.files)

    @property
    def force_pull_sites(self) -> int:
        return sum(f.force_pull_sites for f in self.files)

    def behaviour_changes(self) -> list[str]:
        notes = []
        if self.sites_converted:
            notes.append(
                "Secrets are now fetched inside each Docker task (SecretDockerOperator) through the "
                "'onepassword_default' connection, or OP_CONNECT/OP_API_TOKEN/OP_VAULT_ID when it does not exist; "
                "the separate get_env_vars task and its XCom are gone."
            )
            notes.append(
                "To try a migrated DAG, run 'airflow dags test <dag_id> --use-executor' (or scripts/dev): plain "
                "'airflow dags test', which the files' own comments may suggest, prints task output to your terminal "
                "without masking, secrets included."
            )
        if self.force_pull_sites:
            notes.append(
                f"{self.force_pull_sites} converted Docker task(s) have force_pull=True: a failed pull now fails the "
                "task (ImagePullError) where DockerOperator ran whatever local image there was; add "
                "pull_fallback=True to run the local copy after a registry outage (transient errors only)."
            )
        if any("Slack" in change for f in self.files for change in f.changes):
            notes.append(
                "Slack alerts come from airflow_dts_provider.notifications.slack and are sent only where the "
                "ENVIRONMENT variable is listed in [dts] slack_alert_environments (default: production); the old "
                "helpers sent from every environment, so alerts from staging and development stop unless you set "
                "AIRFLOW__DTS__SLACK_ALERT_ENVIRONMENTS='*' (or list them). They use the 'slack' connection unchanged."
            )
        if self.unused_helpers:
            notes.append(
                "Nothing imports these helper modules any more; delete them (or keep them in .airflowignore): "
                + ", ".join(self.unused_helpers)
            )
        return notes

    def as_dict(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "files_changed": [f.path for f in self.changed_files],
            "sites_converted": self.sites_converted,
            "changes": {f.path: f.changes for f in self.changed_files},
            "left_for_you": [{"path": x.path, "line": x.line, "reason": x.reason} for x in self.left_for_you],
            "unused_helpers": self.unused_helpers,
            "behaviour_changes": self.behaviour_changes(),
        }

    def summary(self) -> str:
        lines = [
            f"dts-airflow migrate: {len(self.changed_files)} of {len(self.files)} files changed, "
            f"{self.sites_converted} Docker task(s) moved to SecretDockerOperator."
        ]
        left = self.left_for_you
        lines.append(f"Left for you ({len(left)}):" if left else "Left for you: nothing.")
        lines.extend(f"  {finding}" for finding in left)
        notes = self.behaviour_changes()
        if notes:
            lines.append("Behaviour changes to know:")
            lines.extend(f"  - {note}" for note in notes)
        return "\n".join(lines)
