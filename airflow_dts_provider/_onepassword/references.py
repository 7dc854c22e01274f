"""Parse the two ways DAGs address a 1Password field.

* the team's ``REQUIRED_SECRETS`` entries: ``{"opitem": "Title", "opfield": "section.field",
  "opvault": "optional vault"}`` where ``opfield`` is ``"section.field"`` (that section exactly),
  ``".field"`` (a field outside any section) or ``"field"`` (the one field with that label, in
  whichever section);
* 1Password secret references: ``op://vault/item/[section/]field[?attribute=value|otp|id|type|purpose]``.

Parsing is pure (no network) so a typo fails when the DAG file is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from airflow_dts_provider._onepassword.errors import InvalidReferenceError, shown

TEAM_KEYS = frozenset({"opitem", "opfield", "opvault"})
ATTRIBUTES = frozenset({"value", "otp", "id", "type", "purpose"})
_ATTRIBUTE_ALIASES = {"totp": "otp"}
ANY_SECTION: None = None
NO_SECTION = ""
_ID_RE = re.compile(r"^[a-z0-9]{26}$")


def looks_like_id(text: str) -> bool:
    """1Password ids are 26 characters of ``[a-z0-9]`` (a title can look like one too)."""
    return bool(_ID_RE.match(text))


@dataclass(frozen=True)
class SecretReference:
    """Where one secret lives.

    ``vault`` None means the client's default vault. ``section`` None means any section (the
    label must then be unique in the item), ``""`` means fields outside any section.
    """

    item: str
    field: str
    vault: str | None = None
    section: str | None = ANY_SECTION
    attribute: str = "value"

    def with_vault(self, vault: str) -> SecretReference:
        return SecretReference(self.item, self.field, vault, self.section, self.attribute)

    def __str__(self) -> str:
        path = [self.vault or "<default vault>", self.item]
        if self.section is not None:
            path.append(self.section or "<no section>")
        path.append(self.field)
        suffix = "" if self.attribute == "value" else f"?attribute={self.attribute}"
        return "op://" + "/".join(path) + suffix


def parse_reference(text: str) -> SecretReference:
    """Parse ``op://vault/item/[section/]field[?attribute=...]``."""
    if not isinstance(text, str):
        raise InvalidReferenceError(f"expected an op:// string, got {type(text).__name__}")
    if not text[:5].lower() == "op://":
        raise InvalidReferenceError(
            f"{shown(text)} is not a 1Password reference: expected op://vault/item/[section/]field"
        )
    body, _, query = text[5:].partition("?")
    parts = body.split("/")
    if len(parts) not in (3, 4) or any(not p.strip() for p in parts):
        raise InvalidReferenceError(
            f"{shown(text)} must have the form op://vault/item/[section/]field with no empty parts "
            f"(found {len(parts)} part(s)); names containing '/' must be given by id"
        )
    attribute = _parse_query(text, query)
    if len(parts) == 3:
        vault, item, field = parts
        section = ANY_SECTION
    else:
        vault, item, section, field = parts
    return SecretReference(item=item, field=field, vault=vault, section=section, attribute=attribute)


def parse_team_entry(entry: Mapping[str, Any]) -> SecretReference:
    """Parse one ``{"opitem": ..., "opfield": ..., "opvault": ...}`` entry."""
    if not isinstance(entry, Mapping):
        raise InvalidReferenceError(
            f"expected a dict with 'opitem' and 'opfield' or an op:// string, got {type(entry).__name__}"
        )
    unknown = sorted(str(k) for k in entry if k not in TEAM_KEYS)
    if unknown:
        raise InvalidReferenceError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}; allowed keys are 'opitem', 'opfield' "
            "and optional 'opvault'"
        )
    item = _required_text(entry, "opitem")
    opfield = _required_text(entry, "opfield")
    vault = entry.get("opvault")
    if vault is not None and (not isinstance(vault, str) or not vault.strip()):
        raise InvalidReferenceError("'opvault' must be a non-empty vault name or id when given")
    section: str | None
    section, dot, field = opfield.partition(".")
    if not dot:
        section, field = ANY_SECTION, opfield
    if not field.strip():
        raise InvalidReferenceError(
            f"'opfield' {shown(opfield)} names no field: use 'section.field', '.field' or 'field'"
        )
    return SecretReference(item=item, field=field, vault=vault, section=section)


def parse_secret_spec(spec: Any) -> SecretReference:
    """Accept a SecretReference, an ``op://`` string or a team dict."""
    if isinstance(spec, SecretReference):
        return spec
    if isinstance(spec, str):
        return parse_reference(spec)
    if isinstance(spec, Mapping):
        return parse_team_entry(spec)
    raise InvalidReferenceError(
        f"expected an op:// string or a dict with 'opitem' and 'opfield', got {type(spec).__name__}"
    )


def parse_secret_mapping(mapping: Any) -> dict[str, SecretReference]:
    """Parse a whole ``REQUIRED_SECRETS``-shaped mapping; errors name the offending key."""
    if not isinstance(mapping, Mapping):
        raise InvalidReferenceError(f"secrets must be a dict of name -> reference, got {type(mapping).__name__}")
    parsed: dict[str, SecretReference] = {}
    for name, spec in mapping.items():
        if not isinstance(name, str) or not name:
            raise InvalidReferenceError(f"secret names must be non-empty strings, got {shown(name)}")
        try:
            parsed[name] = parse_secret_spec(spec)
        except InvalidReferenceError as err:
            raise InvalidReferenceError(f"{shown(name)[1:-1]}: {err}") from None
    return parsed


def _parse_query(text: str, query: str) -> str:
    if not query:
        return "value"
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = {k for k, _ in pairs}
    if keys != {"attribute"} or len(pairs) != 1:
        raise InvalidReferenceError(
            f"{shown(text)}: only the query '?attribute=<{'|'.join(sorted(ATTRIBUTES))}>' is supported"
        )
    value = pairs[0][1].strip().lower()
    value = _ATTRIBUTE_ALIASES.get(value, value)
    if value not in ATTRIBUTES:
        raise InvalidReferenceError(
            f"{shown(text)}: unsupported attribute {pairs[0][1]!r}; supported: {', '.join(sorted(ATTRIBUTES))}"
        )
    return value


def _required_text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidReferenceError(f"{key!r} is required and must be a non-empty string")
    return value
