"""The JSON faces' words for the typed faces' enum values: a typed request becomes the JSON
body or query it stands for, validated by the JSON face's rules."""

from __future__ import annotations


def enum_text(enum, prefix: str, value: int) -> str | None:
    """`GRANULARITY_FIFTEEN_MINUTE` → `fifteen_minute`; the zero value (unset) → None; an
    unknown number as its digits (refused by the validation as not a permitted value)."""
    if not value:
        return None
    try:
        return enum.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return str(value)
