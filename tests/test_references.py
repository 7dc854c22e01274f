"""Parsing of op:// references and the team's REQUIRED_SECRETS entries (pure, no network)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_dts_provider._onepassword import (
    InvalidReferenceError,
    SecretReference,
    parse_reference,
    parse_secret_mapping,
    parse_team_entry,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("op://Vault/Item/field", SecretReference("Item", "field", "Vault", None)),
        ("op://Vault/Item/Section/field", SecretReference("Item", "field", "Vault", "Section")),
        ("op://My Vault/My Item/api.key", SecretReference("My Item", "api.key", "My Vault", None)),
        ("op://v/i/s/f?attribute=otp", SecretReference("i", "f", "v", "s", "otp")),
        ("op://v/i/f?attribute=totp", SecretReference("i", "f", "v", None, "otp")),
        ("OP://v/i/f?attribute=ID", SecretReference("i", "f", "v", None, "id")),
        ("op://v/A+B & C #1/password", SecretReference("A+B & C #1", "password", "v", None)),
    ],
)
def test_parse_op_reference(text: str, expected: SecretReference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vault/item/field", "not a 1Password reference"),
        ("op://vault/item", "must have the form"),
        ("op://vault//field", "no empty parts"),
        ("op://a/b/c/d/e", "found 5 part"),
        ("op://v/i/f?attribute=ssh-format", "unsupported attribute"),
        ("op://v/i/f?foo=bar", "only the query"),
        ("op://v/i/f?attribute=otp&attribute=id", "only the query"),
    ],
)
def test_malformed_op_reference_says_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_reference(text)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"opitem": "Knack", "opfield": "prod.appId"}, SecretReference("Knack", "appId", None, "prod")),
        ({"opitem": "Knack", "opfield": ".notes"}, SecretReference("Knack", "notes", None, "")),
        ({"opitem": "Knack", "opfield": "notes"}, SecretReference("Knack", "notes", None, None)),
        ({"opitem": "D", "opfield": "prod.api.key"}, SecretReference("D", "api.key", None, "prod")),
        ({"opitem": "K", "opfield": "f", "opvault": "V"}, SecretReference("K", "f", "V", None)),
    ],
)
def test_parse_team_entry(entry: dict[str, str], expected: SecretReference) -> None:
    assert parse_team_entry(entry) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"opitem": "K", "opfield": "f", "opvalut": "V"}, "unknown key.*'opvalut'"),
        ({"opitem": "K"}, "'opfield' is required"),
        ({"opfield": "f"}, "'opitem' is required"),
        ({"opitem": "K", "opfield": ""}, "'opfield' is required"),
        ({"opitem": "K", "opfield": "prod."}, "names no field"),
        ({"opitem": "K", "opfield": "."}, "names no field"),
        ({"opitem": "K", "opfield": "f", "opvault": ""}, "'opvault' must be"),
        ({"opitem": 3, "opfield": "f"}, "'opitem' is required"),
    ],
)
def test_bad_team_entry(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_team_entry(entry)


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        (SecretReference("Item", "field", "Vault"), "op://Vault/Item/field"),
        (SecretReference("Item", "field", "Vault", "prod", "otp"), "op://Vault/Item/prod/field?attribute=otp"),
        (SecretReference("Item", "notes", None, ""), "op://<default vault>/Item/<no section>/notes"),
        (parse_team_entry({"opitem": "Knack", "opfield": "prod.appId"}), "op://<default vault>/Knack/prod/appId"),
    ],
)
def test_a_reference_is_shown_as_an_op_path(reference: SecretReference, shown: str) -> None:
    """How warnings and errors name a secret: never its value, always where it lives."""
    assert str(reference) == shown


def test_mapping_errors_name_the_secret() -> None:
    with pytest.raises(InvalidReferenceError, match=r"^KNACK_APP_ID: unknown key"):
        parse_secret_mapping({"OK": "op://v/i/f", "KNACK_APP_ID": {"opitem": "Knack", "opfeild": "prod.appId"}})


def test_mapping_accepts_the_team_shape_verbatim() -> None:
    required_secrets = {
        "KNACK_APP_ID": {"opitem": "Knack", "opfield": "prod.appId"},
        "SO_TOKEN": {"opitem": "Socrata", "opfield": ".appToken", "opvault": "DTS"},
        "PG_PASSWORD": "op://DTS/Warehouse/password",
    }
    parsed = parse_secret_mapping(required_secrets)
    assert parsed["KNACK_APP_ID"].section == "prod"
    assert parsed["SO_TOKEN"].section == ""
    assert parsed["PG_PASSWORD"].vault == "DTS"


# -- property-based fuzz: whatever comes in, only our own error type may come out -------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
reference_like = st.builds(
    lambda parts, query: "op://" + "/".join(parts) + query,
    st.lists(st.text(max_size=6), max_size=6),
    st.sampled_from(["", "?", "?attribute=otp", "?attribute=", "?a=b&c", "?attribute=%ZZ", "#x"]),
)
team_entry_like = st.dictionaries(
    st.sampled_from(["opitem", "opfield", "opvault", "other"]),
    st.none() | st.text(max_size=12) | st.integers(),
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), reference_like))
def test_fuzz_parse_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError:
        return
    assert ref.item.strip() and ref.field.strip() and ref.vault


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.text(max_size=8), team_entry_like | reference_like, max_size=4)))
def test_fuzz_parse_secret_mapping(value: Any) -> None:
    try:
        parsed = parse_secret_mapping(value)
    except InvalidReferenceError:
        return
    assert all(isinstance(r, SecretReference) and r.field.strip() for r in parsed.values())


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (parse_reference, 42, "expected an op:// string, got int"),
        (parse_team_entry, 42, "expected a dict with 'opitem' and 'opfield' or an op:// string, got int"),
        (parse_secret_mapping, ["op://v/i/f"], "secrets must be a dict of name -> reference, got list"),
        (parse_secret_mapping, {"": "op://v/i/f"}, "secret names must be non-empty strings, got ''"),
        (parse_team_entry, {"opitem": "i", "opfield": "f", "opvault": ""},
         "'opvault' must be a non-empty vault name or id when given"),
        (parse_team_entry, {"opitem": "i", "opfield": "f", "x": 1, "y": 2},
         "unknown key(s) 'x', 'y'; allowed keys are 'opitem', 'opfield' and optional 'opvault'"),
        (parse_reference, "op://v/i/f?attribute=", "'op://v/i/f?attribute=': unsupported attribute ''; supported: "),
        (parse_reference, "op://v/i/f?x=1&y=2", "'op://v/i/f?x=1&y=2': only the query '?attribute=<"),
        (parse_reference, "vault/item/field", "'vault/item/field' is not a 1Password reference: expected "
         "op://vault/item/[section/]field"),
    ],
)  # fmt: skip
def test_wrong_shapes_are_named_in_the_message(parse: Any, value: Any, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as err:
        parse(value)
    assert message in str(err.value)


def test_a_default_vault_keeps_the_rest_of_the_reference() -> None:
    reference = parse_reference("op://v/i/s/f?attribute=otp")
    assert reference.with_vault("Other") == SecretReference("i", "f", "Other", "s", "otp")


def test_names_are_shown_whole_up_to_120_characters() -> None:
    from airflow_dts_provider._onepassword.errors import shown

    assert shown("x" * 120) == repr("x" * 120)
    assert shown("x" * 121) == repr("x" * 117 + "...")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"opitem": "i", "opfield": "f", "opvault": " "}, "'opvault' must be a non-empty vault name or id when given"),
        (5, "expected an op:// string or a dict with 'opitem' and 'opfield', got int"),
        ("op://v/i/f?foo=bar",
         "'op://v/i/f?foo=bar': only the query '?attribute=<id|otp|purpose|type|value>' is supported"),
        ("op://v/i/f?attribute=colour",
         "'op://v/i/f?attribute=colour': unsupported attribute 'colour'; supported: id, otp, purpose, type, value"),
    ],
)  # fmt: skip
def test_wrong_specs_get_the_whole_message(spec: Any, message: str) -> None:
    from airflow_dts_provider._onepassword import parse_secret_spec

    with pytest.raises(InvalidReferenceError) as err:
        parse_secret_spec(spec)
    assert str(err.value) == message
