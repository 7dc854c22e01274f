"""Private 1Password Connect client shared by the hook, the secrets backend and the operator."""

from __future__ import annotations

from airflow_dts_provider._onepassword.client import (
    ConnectSettings,
    OnePasswordClient,
    shared_client,
)
from airflow_dts_provider._onepassword.errors import (
    AmbiguousFieldError,
    AmbiguousItemError,
    FieldNotFoundError,
    InvalidReferenceError,
    ItemNotFoundError,
    OnePasswordConfigError,
    OnePasswordError,
    OnePasswordUnauthorizedError,
    OnePasswordUnavailableError,
    VaultNotFoundError,
    shown,
)
from airflow_dts_provider._onepassword.masking import (
    mask,
    mask_json_leaves,
    maskable_parts,
    scrub_parts,
    scrub_text,
)
from airflow_dts_provider._onepassword.models import Item, ItemField
from airflow_dts_provider._onepassword.references import (
    SecretReference,
    parse_reference,
    parse_secret_mapping,
    parse_secret_spec,
    parse_team_entry,
)

__all__ = [
    "AmbiguousFieldError",
    "AmbiguousItemError",
    "ConnectSettings",
    "FieldNotFoundError",
    "InvalidReferenceError",
    "Item",
    "ItemField",
    "ItemNotFoundError",
    "OnePasswordClient",
    "OnePasswordConfigError",
    "OnePasswordError",
    "OnePasswordUnauthorizedError",
    "OnePasswordUnavailableError",
    "SecretReference",
    "VaultNotFoundError",
    "mask",
    "mask_json_leaves",
    "maskable_parts",
    "parse_reference",
    "parse_secret_mapping",
    "parse_secret_spec",
    "parse_team_entry",
    "scrub_parts",
    "scrub_text",
    "shared_client",
    "shown",
]
