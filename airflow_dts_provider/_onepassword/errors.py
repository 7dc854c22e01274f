"""One small hierarchy for everything that can go wrong talking to 1Password.

Messages name vaults, items, sections and fields -- never a value or the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

#: Names in messages are cut to this length (a 1 MB ``opitem`` must not make a 1 MB error).
MAX_NAME_CHARS = 120


def shown(name: object) -> str:
    """``repr`` of a vault, item, section or field name, cut to keep error lines short."""
    text = str(name)
    return repr(text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 3] + "...")


class OnePasswordError(Exception):
    """Base class: catch this to handle any 1Password problem."""


class InvalidReferenceError(OnePasswordError, ValueError):
    """A secret reference (``op://`` string or ``opitem``/``opfield`` dict) is malformed."""


class OnePasswordConfigError(OnePasswordError, ValueError):
    """The client is missing a host, token or vault, or a setting is out of range."""


class VaultNotFoundError(OnePasswordError):
    def __init__(self, vault: str, known: Iterable[str] = (), hint: str = ""):
        self.vault = vault
        hint = hint or _did_you_mean(vault, known)
        super().__init__(f"1Password vault {shown(vault)} not found or not shared with this Connect token.{hint}")


class ItemNotFoundError(OnePasswordError):
    def __init__(self, vault: str, item: str, known_titles: Iterable[str] = ()):
        self.vault = vault
        self.item = item
        hint = _did_you_mean(item, known_titles)
        super().__init__(f"1Password item {shown(item)} not found in vault {shown(vault)}.{hint}")


class AmbiguousItemError(OnePasswordError):
    def __init__(self, vault: str, item: str, item_ids: Sequence[str]):
        self.vault = vault
        self.item = item
        self.item_ids = list(item_ids)
        super().__init__(
            f"{len(item_ids)} items in vault {shown(vault)} are titled {shown(item)} "
            f"(ids: {', '.join(item_ids)}); rename one or address the item by id."
        )


class FieldNotFoundError(OnePasswordError):
    def __init__(
        self, vault: str, item: str, field: str, labels_by_section: Mapping[str, Sequence[str]], hint: str = ""
    ):
        self.vault = vault
        self.item = item
        self.field = field
        self.labels_by_section = {k: list(v) for k, v in labels_by_section.items()}
        listing = "; ".join(
            f"{section or '(no section)'}: {', '.join(labels) or '-'}"
            for section, labels in self.labels_by_section.items()
        )
        super().__init__(
            f"Field {shown(field)} not found in 1Password item {shown(item)} (vault {shown(vault)}). "
            f"Fields by section: {listing or 'the item has no fields'}.{hint}"
        )


class AmbiguousFieldError(OnePasswordError):
    def __init__(self, vault: str, item: str, field: str, sections: Sequence[str]):
        self.vault = vault
        self.item = item
        self.field = field
        self.sections = list(sections)
        names = ", ".join(s or "(no section)" for s in sections)
        super().__init__(
            f"Field {shown(field)} of 1Password item {shown(item)} (vault {shown(vault)}) exists in several "
            f"sections ({names}); say which one, e.g. 'section.field' or '.field' for the one without a section."
        )


class OnePasswordUnauthorizedError(OnePasswordError):
    """Connect answered 401/403: the token is invalid, expired or lacks access to the vault."""


class OnePasswordUnavailableError(OnePasswordError):
    """Connect could not be reached or kept failing after the bounded retries."""


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        lowered = name.casefold()
        close = [c for c in candidates if lowered in c.casefold()][:3]
    return f" Did you mean: {', '.join(shown(c) for c in close)}?" if close else ""
