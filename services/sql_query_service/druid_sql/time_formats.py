"""Druid (Joda) date patterns and ISO-8601 periods, as PostgreSQL understands them."""

from __future__ import annotations

import re

from sql_query_service.druid_sql.problems import SqlError

# Joda letter runs → to_char patterns; anything else is copied as quoted text.
_JODA = {
    "yyyy": "YYYY", "yy": "YY", "YYYY": "YYYY", "MMMM": "FMMonth", "MMM": "Mon", "MM": "MM",
    "M": "FMMM", "dd": "DD", "d": "FMDD", "HH": "HH24", "H": "FMHH24", "hh": "HH12",
    "h": "FMHH12", "mm": "MI", "ss": "SS", "SSS": "MS", "a": "AM", "EEEE": "FMDay",
    "EEE": "Dy", "E": "Dy", "D": "DDD", "Z": '"+0000"', "ZZ": '"+00:00"', "w": "IW",
}
ISO = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'


def to_char_pattern(joda: str) -> str:
    """A Joda pattern as a PostgreSQL to_char pattern (UTC): 'yyyy-MM-dd' → 'YYYY-MM-DD'."""
    out: list[str] = []
    i = 0
    while i < len(joda):
        char = joda[i]
        if char == "'":
            end = joda.find("'", i + 1)
            end = len(joda) if end < 0 else end
            out.append('"' + joda[i + 1:end].replace('"', "") + '"' if end > i + 1 else "'")
            i = end + 1
            continue
        run = i
        while run < len(joda) and joda[run] == char:
            run += 1
        token = joda[i:run]
        if char.isalpha():
            if token not in _JODA:
                raise SqlError(f"Unsupported TIME_FORMAT pattern letter '{token}'")
            out.append(_JODA[token])
        else:
            out.append('"' + token.replace('"', "") + '"')
        i = run
    return "".join(out)


_PERIOD = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)


def period(text: str) -> tuple[str, int]:
    """An ISO period as ('seconds', n) for fixed lengths or (calendar unit, 1):
    'PT15M' → ('seconds', 900), 'P1M' → ('month', 1), 'P3M' → ('quarter', 1)."""
    match = _PERIOD.match(text.upper()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise SqlError(f"Invalid ISO-8601 period '{text}'")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if years or months:
        if (years, months, weeks, days, hours, minutes, seconds) == (1, 0, 0, 0, 0, 0, 0):
            return "year", 1
        if (years, weeks, days, hours, minutes, seconds) == (0, 0, 0, 0, 0, 0) and months in (1, 3):
            return ("month" if months == 1 else "quarter"), 1
        raise SqlError(f"Unsupported period '{text}': use P1M, P3M, P1Y or a fixed length")
    if weeks:
        if (weeks, days, hours, minutes, seconds) != (1, 0, 0, 0, 0):
            raise SqlError(f"Unsupported period '{text}': weeks must be P1W")
        return "week", 1
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise SqlError(f"Invalid ISO-8601 period '{text}'")
    return "seconds", total


def period_fields(text: str) -> tuple[int, int, int, int, int, int, int]:
    """(years, months, weeks, days, hours, minutes, seconds) of an ISO-8601 period, any
    combination (TIME_FLOOR aligns calendar multiples such as 'P2M' like Druid does)."""
    match = _PERIOD.match(text.upper()) if isinstance(text, str) else None
    fields = tuple(int(g or 0) for g in match.groups()) if match else ()
    if not fields or not any(fields):
        raise SqlError(f"Invalid ISO-8601 period '{text}'")
    return fields  # type: ignore[return-value]
