"""Items as the rest of the provider sees them: immutable, and with values kept out of reprs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from airflow_dts_provider._onepassword.errors import (
    AmbiguousFieldError,
    FieldNotFoundError,
    OnePasswordError,
)


@dataclass(frozen=True)
class ItemField:
    id: str
    label: str
    type: str
    purpose: str
    section_id: str | None
    section_label: str | None
    value: str | None = field(default=None, repr=False)
    totp: str | None = field(default=None, repr=False)

    def attribute(self, name: str) -> str | None:
        """The value a reference's ``?attribute=`` asks for."""
        if name == "value":
            return self.value
        if name == "otp":
            if self.totp:
                return self.totp
            if self.type not in ("TOTP", "OTP") or not self.value:
                raise OnePasswordError(f"field {self.label!r} is not a one-time password field")
            return totp_now(self.value)
        return {"id": self.id, "type": self.type, "purpose": self.purpose}[name]


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    vault_id: str
    category: str
    version: int
    sections: tuple[tuple[str, str | None], ...]
    fields: tuple[ItemField, ...]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Item:
        """Build from Connect's JSON; unknown enum values are kept, not rejected."""
        section_labels = {s["id"]: s.get("label") for s in raw.get("sections") or [] if s.get("id")}
        fields = []
        for f in raw.get("fields") or []:
            section_id = (f.get("section") or {}).get("id")
            fields.append(
                ItemField(
                    id=f.get("id") or "",
                    label=f.get("label") or "",
                    type=f.get("type") or "STRING",
                    purpose=f.get("purpose") or "",
                    section_id=section_id,
                    section_label=section_labels.get(section_id) if section_id else None,
                    value=f.get("value"),
                    totp=f.get("totp"),
                )
            )
        return cls(
            id=raw["id"],
            title=raw.get("title") or "",
            vault_id=(raw.get("vault") or {}).get("id", ""),
            category=raw.get("category") or "",
            version=int(raw.get("version") or 0),
            sections=tuple(section_labels.items()),
            fields=tuple(fields),
        )

    def labels_by_section(self) -> dict[str, list[str]]:
        listing: dict[str, list[str]] = {}
        for f in self.fields:
            listing.setdefault(f.section_label or "", []).append(f.label or f.id)
        return listing

    def find_field(self, field_name: str, section: str | None, vault_label: str) -> ItemField:
        """Find one field by id or label; ``section`` None = any, ``""`` = outside any section.

        Exact matches win over case-insensitive ones; more than one match is an error, never a guess.
        """
        for fold in (False, True):
            in_scope = [f for f in self.fields if _in_section(f, section, fold)]
            matches = [f for f in in_scope if _same(f.id, field_name, fold) or _same(f.label, field_name, fold)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                by_id = [f for f in matches if f.id == field_name]
                if len(by_id) == 1:
                    return by_id[0]
                raise AmbiguousFieldError(vault_label, self.title, field_name, [f.section_label or "" for f in matches])
        wanted = field_name if section is None else f"{section}.{field_name}"
        hint = ""
        if section and any(f.label == wanted or f.id == wanted for f in self.fields):
            # {"opfield": "api.token"} reads as section "api", field "token"; the label has a dot.
            hint = (
                f" A field is labelled {wanted!r} itself: 'opfield' reads the first dot as section.field, so "
                f"address it as op://{vault_label}/{self.title}/{wanted} or move it into a section."
            )
        raise FieldNotFoundError(vault_label, self.title, wanted, self.labels_by_section(), hint=hint)

    def values(self) -> list[str]:
        """Every field value (and one-time password) in the item."""
        return [v for f in self.fields for v in (f.value, f.totp) if v]

    def secret_values(self) -> list[str]:
        """Values that are secret by type or purpose, for the log masker."""
        return [
            f.value
            for f in self.fields
            if f.value and (f.type in ("CONCEALED", "TOTP", "OTP") or f.purpose == "PASSWORD")
        ]


def fold(text: str) -> str:
    """The form names are compared in when case does not matter: lower case, and nothing more.

    Not ``casefold``: it turns the long s (U+017F) into ``s`` and ``ß`` into ``ss``, so a title spelled
    with a long s would find ``warehouse_dsn``. A character that lower-cases to ASCII from outside it
    (the Kelvin sign, U+212A) is kept as it is, for the same reason.
    """
    return "".join(c if not c.isascii() and c.lower().isascii() else c.lower() for c in text)


def _same(candidate: str | None, wanted: str, ignore_case: bool) -> bool:
    if not candidate:
        return False
    return fold(candidate) == fold(wanted) if ignore_case else candidate == wanted


def _in_section(f: ItemField, section: str | None, fold: bool) -> bool:
    if section is None:
        return True
    if section == "":
        return not f.section_label
    return (f.section_id == section) or _same(f.section_label, section, fold)


def totp_now(secret_or_uri: str, at: float | None = None) -> str:
    """RFC 6238 code from a base32 secret or an ``otpauth://`` URI (SHA1/256/512, digits, period)."""
    digits, period, algorithm = 6, 30, "sha1"
    secret = secret_or_uri.strip()
    if secret.lower().startswith("otpauth://"):
        params = {k.lower(): v[0] for k, v in parse_qs(urlparse(secret).query).items()}
        secret = params.get("secret", "")
        digits = int(params.get("digits", digits))
        period = int(params.get("period", period))
        algorithm = params.get("algorithm", algorithm).lower()
    if algorithm not in ("sha1", "sha256", "sha512") or not secret:
        raise OnePasswordError("one-time password field holds no usable TOTP secret")
    key_text = secret.replace(" ", "").upper()
    try:
        key = base64.b32decode(key_text + "=" * (-len(key_text) % 8))
    except ValueError:
        raise OnePasswordError("one-time password field holds no valid base32 secret") from None
    counter = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, algorithm)).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % (10**digits)
    return str(code).zfill(digits)
