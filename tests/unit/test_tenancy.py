"""Authorization header parsing and key generation."""

import pytest

from edgestats_core.tenancy.api_keys import KEY_PREFIX, hash_key, new_key, parse_authorization


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer es_abc", "es_abc"),
        ("bearer es_abc", "es_abc"),
        ("es_abc", "es_abc"),
        ("  Bearer   es_abc  ", "es_abc"),
        ("Bearer", "Bearer"),  # a bare key that happens to read "Bearer": looked up, fails there
        ("Basic dXNlcjpwYXNz", None),
        ("", None),
        (None, None),
    ],
)
def test_both_header_forms(header, key):
    assert parse_authorization(header) == key


def test_keys_are_random_and_hashed():
    (a, a_id), (b, _) = new_key(), new_key()
    assert a != b and a.startswith(KEY_PREFIX) and a[len(KEY_PREFIX):].startswith(a_id)
    assert len(a) > 40
    assert hash_key(a) == hash_key(a) != hash_key(b)
