"""The msgspec JSON path (beacon_json) answers exactly what parse_body + validate_all answer:
the same rows, the same rejected indexes and reasons, the same 400 and 413, on odd bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.errors import ApiError
from edgestats_core.ingest_body import MAX_ITEMS, parse_body
from metrics_service import beacon_validation
from metrics_service.beacon_json import validate_body
from metrics_service.beacon_validation import validate_all
from tests.builders import scenario, wire

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
MS = int((NOW - timedelta(seconds=5)).timestamp() * 1000)


def outcome(validate, data: bytes) -> object:
    """(rows, rejected) of a body, or the error's type, status and body."""
    try:
        batch = validate(data)
    except ApiError as exc:
        return type(exc).__name__, exc.body()
    return batch.rows, batch.rejected


def assert_same(data: bytes) -> None:
    fast = outcome(lambda d: validate_body(d, "c1", NOW), data)
    reference = outcome(lambda d: validate_all(parse_body(d), "c1", NOW), data)
    assert fast == reference, data[:300]


def item(**overrides) -> dict:
    return {"__time": MS, "CustomerId": "c1", "SessionId": "s1", "Source": "p2p", **overrides}


def fragment(raw: str) -> bytes:
    """A JSON array: a valid item, then one with the raw JSON `"Key": value` fragment."""
    return ("[" + json.dumps(item()) + ", " + json.dumps(item(SessionId="s2"))[:-1]
            + ", " + raw + "}]").encode()


VALID = [wire(b) for b in scenario("c1", NOW, seed=5)]

ODD_FRAGMENTS = {
    "NaN": '"ViewingTime": NaN',
    "Infinity": '"ViewingTime": -Infinity',
    "NaN in an unknown field": '"Extra": [1, {"x": NaN}]',
    "huge integer": '"ViewingTime": 1' + "0" * 400,
    "huge integer for an int": '"DroppedFrames": 1' + "0" * 30,
    "huge integer in an unknown field": '"Extra": 1' + "0" * 400,
    "huge float": '"ViewingTime": 1e400',
    "huge float in an unknown field": '"Extra": 1e999',
    "big integer for a double": '"ViewingTime": 1180591620717411303424',
    "big integer time": '"__time": 99999999999999999999999999',
    "float time with a fraction": f'"__time": {MS}.9999',
    "float time rounding up": f'"__time": {MS + 999}.9999999',
    "negative zero": '"BufferHealth": -0.0',
    "exponent": '"BufferHealth": 1E5',
    "integral float for an int": '"DroppedFrames": 3.0',
    "int32 max": '"DroppedFrames": 2147483647',
    "int32 min": '"DroppedFrames": -2147483648',
    "int32 min + 1": '"DroppedFrames": -2147483647',
    "nested object for a string": '"StreamId": {"a": {"b": [1]}}',
    "nested object unknown": '"Extra": {"a": {"b": [1, null, true]}}',
    "array for a double": '"Latitude": [1.0]',
    "string for a bool": '"P2pCompatible": "true"',
    "number for a bool": '"P2pCompatible": 1',
    "bool for a double": '"ViewingTime": true',
    "bool for an int": '"DroppedFrames": false',
    "bool time": '"__time": true',
    "object time": '"__time": {"seconds": 1}',
    "ISO time": '"__time": "2026-11-25T11:59:55.987Z"',
    "ISO time with offset": '"__time": "2026-11-25T12:59:55+01:00"',
    "bad ISO time": '"__time": "2024-13-45T00:00:00Z"',
    "old time": '"__time": 1000',
    "duplicate key, valid last": '"Source": "satellite", "Source": "cdn"',
    "duplicate key, invalid last": '"Source": "cdn", "Source": 5',
    "duplicate key, wrong type first": '"DroppedFrames": "x", "DroppedFrames": 2',
    "duplicate customer": '"CustomerId": "c2", "CustomerId": "c1"',
    "NUL": '"ChannelId": "a\\u0000b"',
    "NUL in an unknown field": '"Extra": "\\u0000"',
    "lone surrogate": '"ChannelId": "\\ud800"',
    "lone surrogate unknown": '"Extra": "a\\udc00b"',
    "surrogate pair": '"ChannelId": "\\ud83d\\ude00"',
    "escapes": '"ChannelId": "tab\\there \\"q\\" \\\\ \\/ \\n"',
    "1,024 characters": '"ChannelId": "' + "é" * 1024 + '"',
    "1,025 characters": '"ChannelId": "' + "x" * 1025 + '"',
    "empty string": '"ChannelId": ""',
    "empty SessionId": '"SessionId": ""',
    "null Source": '"Source": null',
    "null __time": '"__time": null',
    "time as key name": '"time": 5',
    "lower-case key": '"customerid": "other"',
    "escaped key": '"Sourc\\u0065": "satellite"',
    "escaped key, valid": '"Sourc\\u0065": "cdn", "Channel\\u0049d": "ch"',
    "escaped value": '"Source": "\\u0063dn"',
}


@pytest.mark.parametrize("case", list(ODD_FRAGMENTS))
def test_odd_values_get_the_same_answer(case):
    assert_same(fragment(ODD_FRAGMENTS[case]))


ODD_BODIES = {
    "array": json.dumps(VALID),
    "ndjson": "\n".join(json.dumps(i) for i in VALID) + "\n",
    "ndjson crlf and blank lines": "\r\n".join(json.dumps(i) for i in VALID[:3]) + "\n\n \n",
    "one object": json.dumps(VALID[0]),
    "one object over lines": json.dumps(VALID[0], indent=2),
    "pretty array": json.dumps(VALID[:3], indent=2),
    "empty array": "[]",
    "spaced empty array": " [ ] ",
    "scalar": "5",
    "string": '"beacon"',
    "null": "null",
    "array of scalars": "[1, \"x\", null, [], {}]",
    "ndjson of arrays": "[1]\n[2]",
    "ndjson with a scalar": json.dumps(VALID[0]) + "\n5\n",
    "two arrays on a line": "[1] [2]",
    "ndjson broken line": json.dumps(VALID[0]) + "\n{",
    "not json": "not json",
    "trailing comma": "[{}, ]",
    "empty": "",
    "blank": " \r\n\t ",
    "form feed only": "\x0c",
    "BOM": "\ufeff[]",
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep in an item": "[{\"Extra\": " + "[" * 100_000 + "]" * 100_000 + "}]",
    "other customer": json.dumps([item(CustomerId="c2"), item()]),
    "wrong types everywhere": json.dumps([{c.druid: "x" for c in COLUMNS}, item()]),
}


@pytest.mark.parametrize("case", list(ODD_BODIES))
def test_odd_bodies_get_the_same_answer(case):
    assert_same(ODD_BODIES[case].encode())


@pytest.mark.parametrize("raw", [b"\xff\xfe[]", b'[{"SessionId": "\xe9"}]',
                                 b'[{"Extra": "\xe9"}]', b'[{"Extra": [{"q": "\xed\xa0\x80"}]}]',
                                 b'[{"Extra": 1, "\xe9": 2}]', b'[{"ChannelId": "a\x00b"}]'])
def test_bytes_that_are_not_utf8_or_json_get_the_same_answer(raw):
    assert_same(raw)


def test_the_limits_are_the_same():
    assert_same(json.dumps([item()] * (MAX_ITEMS + 1)).encode())
    assert_same(("\n".join([json.dumps(item())] * (MAX_ITEMS + 1))).encode())
    assert_same(json.dumps([item()] * MAX_ITEMS).encode())
    assert_same(b" " * (10 * 1024 * 1024 + 1))


def test_a_mixed_batch_keeps_indexes_and_reasons():
    bad = [5, item(Source="x"), item(BufferHealth="1"), item(DroppedFrames=1.5), [item()],
           item(__time=None), item(CustomerId="c2"), None, item(P2pCompatible=1)]
    batch = [x for pair in zip(VALID, bad, strict=False) for x in pair] + VALID[len(bad):]
    assert_same(json.dumps(batch).encode())
    assert_same("\n".join(json.dumps(x) for x in batch).encode())


def test_valid_beacons_take_the_fast_path(monkeypatch):
    """Not one valid beacon of a realistic body goes through validate()."""
    def refuse(*args):
        raise AssertionError("validate() called")

    monkeypatch.setattr(beacon_validation, "validate", refuse)
    batch = validate_body(json.dumps(VALID).encode(), "c1", NOW)
    assert len(batch.rows) == len(VALID) and not batch.rejected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["", "cdn", "p2p", "c1", "s", "x" * 1025]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=5,
)
NAMES = st.sampled_from([c.druid for c in COLUMNS] + ["Extra"])
TIMES = st.one_of(st.integers(MS - 40 * 86_400_000, MS + 600_000),
                  st.floats(MS - 10**6, MS + 10**6), st.sampled_from(
                      ["2026-11-25T11:59:55Z", "2026-11-25T11:59:55", "nope", "2026-11-25"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TIMES, st.dictionaries(NAMES, JSON_VALUES, max_size=6)), max_size=5))
def test_random_items_get_the_same_answer(pairs):
    items = [{**item(__time=time), **extra} for time, extra in pairs]
    assert_same(json.dumps(items).encode())


@pytest.mark.parametrize("offset_ms", [0, 1, 499, 500, 501, 998, 999, 1000, 1001])
@pytest.mark.parametrize("seconds_ago", [0, 1, 3600, 86_400 * 29, 86_400 * 31, -299, -301])
def test_epoch_milliseconds_share_their_second(offset_ms, seconds_ago):
    """The per-second cache of integer times gives parse_time's instant, or sends the item to
    validate when parse_time refuses it."""
    base = int(NOW.timestamp()) - seconds_ago
    times = [base * 1000 + offset_ms, base * 1000, base * 1000 + 999]
    assert_same(json.dumps([item(__time=t, SessionId=f"s{i}")
                            for i, t in enumerate(times)]).encode())
