"""Vault contents for the dev vault: read a YAML/JSON file into Connect API 1.7.1 shaped JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VAULT_TYPES = ("USER_CREATED", "PERSONAL", "EVERYONE", "TRANSFER")
FIELD_TYPES = ("STRING", "EMAIL", "CONCEALED", "URL", "TOTP", "DATE", "MONTH_YEAR", "MENU")
FIELD_PURPOSES = ("", "USERNAME", "PASSWORD", "NOTES")
TIMESTAMP = "2026-01-01T00:00:00Z"
_VAULT_KEYS = {"name", "id", "type", "description", "items"}
_ITEM_KEYS = {"title", "id", "category", "tags", "urls", "sections", "fields", "trashed"}
_FIELD_KEYS = {"label", "value", "id", "type", "purpose", "section"}
_PURPOSE_IDS = {"USERNAME": "username", "PASSWORD": "password", "NOTES": "notesPlain"}


class VaultFileError(ValueError):
    """The vault file does not have the documented shape; the message says where."""


def stable_id(*parts: str) -> str:
    """A 26-character ``[a-z0-9]`` id derived from names, so ids survive restarts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:26]


@dataclass
class VaultData:
    """Vault summaries and full items, already in the JSON shapes Connect returns."""

    vaults: list[dict[str, Any]]
    items: dict[str, list[dict[str, Any]]]  # vault id -> full items

    @classmethod
    def load(cls, path: str | Path) -> VaultData:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise VaultFileError(f"{path}: not UTF-8 text (byte {err.start}); save the vault file as UTF-8") from None
        try:
            raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as err:
            raise VaultFileError(f"{path}: not valid YAML/JSON: {err}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "vault data") -> VaultData:
        if not isinstance(raw, dict) or not isinstance(raw.get("vaults"), list):
            raise VaultFileError(f"{source}: expected a mapping with a 'vaults' list")
        vaults: list[dict[str, Any]] = []
        items: dict[str, list[dict[str, Any]]] = {}
        for v_index, vault in enumerate(raw["vaults"]):
            where = f"{source}: vaults[{v_index}]"
            _check_keys(vault, _VAULT_KEYS, where)
            name = _text(vault, "name", where)
            vault_id = vault.get("id") or stable_id("vault", name)
            if vault_id in items:
                raise VaultFileError(f"{where}: duplicate vault id {vault_id!r}")
            vault_type = vault.get("type", "USER_CREATED")
            if vault_type not in VAULT_TYPES:
                raise VaultFileError(f"{where}: type must be one of {VAULT_TYPES}")
            built = [
                _item(vault_id, name, item, f"{where}.items[{i}]", _occurrence(vault.get("items") or [], i))
                for i, item in enumerate(vault.get("items") or [])
            ]
            items[vault_id] = built
            vaults.append(
                {
                    "id": vault_id,
                    "name": name,
                    "description": vault.get("description", ""),
                    "attributeVersion": 1,
                    "contentVersion": len(built) + 1,
                    "items": len(built),
                    "type": vault_type,
                    "createdAt": TIMESTAMP,
                    "updatedAt": TIMESTAMP,
                }
            )
        return cls(vaults, items)

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("fields", "sections")}


def _occurrence(items: list[Any], index: int) -> int:
    """How many earlier items share this title: keeps duplicate titles' ids distinct and stable."""
    title = items[index].get("title") if isinstance(items[index], dict) else None
    return sum(1 for other in items[:index] if isinstance(other, dict) and other.get("title") == title)


def _item(vault_id: str, vault_name: str, item: Any, where: str, occurrence: int) -> dict[str, Any]:
    _check_keys(item, _ITEM_KEYS, where)
    title = _text(item, "title", where)
    item_id = item.get("id") or stable_id("item", vault_name, title, str(occurrence))
    seed = (vault_name, title, str(occurrence))
    sections: dict[str, dict[str, str]] = {}
    for label in item.get("sections") or []:
        sections.setdefault(str(label), {"id": stable_id("section", *seed, str(label)), "label": str(label)})
    fields = []
    for f_index, field in enumerate(item.get("fields") or []):
        f_where = f"{where}.fields[{f_index}]"
        _check_keys(field, _FIELD_KEYS, f_where)
        label = _text(field, "label", f_where)
        field_type = field.get("type", "STRING")
        purpose = field.get("purpose", "")
        if field_type not in FIELD_TYPES:
            raise VaultFileError(f"{f_where}: type must be one of {FIELD_TYPES}")
        if purpose not in FIELD_PURPOSES:
            raise VaultFileError(f"{f_where}: purpose must be one of {FIELD_PURPOSES}")
        entry: dict[str, Any] = {
            "id": field.get("id")
            or _PURPOSE_IDS.get(purpose)
            or stable_id("field", *seed, str(field.get("section", "")), label, str(f_index)),
            "type": field_type,
            "purpose": purpose,
            "label": label,
            "value": "" if field.get("value") is None else str(field["value"]),
        }
        if field.get("section") is not None:
            section_label = str(field["section"])
            section = sections.setdefault(
                section_label, {"id": stable_id("section", *seed, section_label), "label": section_label}
            )
            entry["section"] = {"id": section["id"]}
        fields.append(entry)
    return {
        "id": item_id,
        "title": title,
        "vault": {"id": vault_id},
        "category": item.get("category", "LOGIN" if any(f["purpose"] for f in fields) else "PASSWORD"),
        "tags": [str(tag) for tag in _list(item, "tags", where)],
        "urls": [_url(url, f"{where}.urls[{u}]", u == 0) for u, url in enumerate(_list(item, "urls", where))],
        "favorite": False,
        "trashed": bool(item.get("trashed", False)),
        "version": 1,
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
        "lastEditedBy": stable_id("user", "devvault"),
        "sections": list(sections.values()),
        "fields": fields,
    }


def _list(item: dict[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key) or []
    if not isinstance(value, list):
        raise VaultFileError(f"{where}: '{key}' must be a list")
    return value


def _url(url: Any, where: str, first: bool) -> dict[str, Any]:
    """A website of an item: ``"https://..."`` or ``{href, label, primary}``; the first is primary by default."""
    if isinstance(url, str):
        url = {"href": url}
    _check_keys(url, {"href", "label", "primary"}, where)
    entry: dict[str, Any] = {"primary": bool(url.get("primary", first)), "href": _text(url, "href", where)}
    if url.get("label"):
        entry["label"] = str(url["label"])
    return entry


def _check_keys(value: Any, allowed: set[str], where: str) -> None:
    if not isinstance(value, dict):
        raise VaultFileError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise VaultFileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _text(value: dict[str, Any], key: str, where: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text:
        raise VaultFileError(f"{where}: '{key}' is required and must be a non-empty string")
    return text
