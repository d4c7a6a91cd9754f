"""API keys: creation (shown once), hashing, lookup to a Principal, listing, revocation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from edgestats_core.tenancy.principals import REGIONS, TIERS, Principal

KEY_PREFIX = "es_"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> str:
    """The public id of a key (as listed by `keys list`)."""
    return key[len(KEY_PREFIX):][:8]


def new_key() -> tuple[str, str]:
    """A fresh random key and its public id (the first 8 characters after the prefix)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_id_of(key)


def parse_authorization(value: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` or bare `Authorization: <key>` header."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip() or None
    return None if rest else scheme


# A key, or an unexpired OAuth access token of a live client (tenancy/oauth.py). Tokens
# share the rate-limit bucket of their client (key_id oauth:<client_id>), so asking for
# more tokens gives no more requests. `expires_in` bounds how long the answer is cached.
LOOKUP_SQL = """
SELECT k.key_id, k.kind, k.owner_id,
       coalesce(c.tier, r.tier) AS tier,
       coalesce(c.region, r.region) AS region,
       r.customers,
       (SELECT array_agg(rc.region ORDER BY u.ord)
        FROM unnest(r.customers) WITH ORDINALITY AS u(customer_id, ord)
        LEFT JOIN customers rc ON rc.customer_id = u.customer_id) AS customer_regions,
       k.rate_limit, k.rate_burst, NULL::double precision AS expires_in
FROM api_keys k
LEFT JOIN customers c ON k.kind = 'customer' AND c.customer_id = k.owner_id
LEFT JOIN resellers r ON k.kind = 'reseller' AND r.reseller_id = k.owner_id
WHERE k.key_hash = %(digest)s AND k.revoked_at IS NULL
UNION ALL
SELECT 'oauth:' || t.client_id, 'usage-user', t.user_id, NULL, NULL, NULL, NULL, NULL, NULL,
       extract(epoch FROM t.expires_at - now())::double precision
FROM oauth_access_tokens t
JOIN oauth_clients o ON o.client_id = t.client_id AND o.revoked_at IS NULL
WHERE t.token_hash = %(digest)s AND t.expires_at > now()
"""


def principal_from_row(row: dict) -> Principal:
    kind = row["kind"]
    limit = None
    if row.get("rate_limit") is not None:
        limit = (row["rate_limit"], row["rate_burst"] or row["rate_limit"])
    return Principal(
        key_id=row["key_id"],
        kind=kind,
        tier=row["tier"] or "lite",
        customer_id=row["owner_id"] if kind == "customer" else None,
        region=row["region"],
        reseller_id=row["owner_id"] if kind == "reseller" else None,
        customers=tuple(row["customers"] or ()),
        customer_regions=tuple(row.get("customer_regions") or ()),
        user_id=row["owner_id"] if kind == "usage-user" else None,
        limit=limit,
    )


@dataclass(frozen=True)
class KeyInfo:
    owner_id: str
    key_id: str
    kind: str
    created_at: datetime
    revoked_at: datetime | None
    rate_limit: float | None = None
    rate_burst: float | None = None


def _check(value: str | None, allowed: tuple[str, ...], name: str) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")


def _insert_key(cur: psycopg.Cursor, owner_id: str, kind: str) -> str:
    key, key_id = new_key()
    cur.execute(
        "INSERT INTO api_keys (owner_id, key_id, key_hash, kind) VALUES (%s, %s, %s, %s)",
        (owner_id, key_id, hash_key(key), kind),
    )
    return key


def create_customer_key(conn: psycopg.Connection, customer_id: str, region: str, tier: str) -> str:
    """Create (or update) the customer and return a new key for it."""
    _check(region, REGIONS, "region")
    _check(tier, TIERS, "tier")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO customers (customer_id, region, tier) VALUES (%s, %s, %s)"
            " ON CONFLICT (customer_id) DO UPDATE"
            " SET region = EXCLUDED.region, tier = EXCLUDED.tier",
            (customer_id, region, tier),
        )
        return _insert_key(cur, customer_id, "customer")


def create_reseller_key(
    conn: psycopg.Connection, reseller_id: str, customers: list[str], tier: str, region: str | None
) -> str:
    """Create (or update) the reseller; its customers may not have a higher tier than its own."""
    _check(region, REGIONS, "region")
    _check(tier, TIERS, "tier")
    with conn.transaction(), conn.cursor() as cur:
        if tier == "lite":
            cur.execute(
                "SELECT customer_id FROM customers"
                " WHERE customer_id = ANY(%s) AND tier = 'advanced'",
                (customers,),
            )
            higher = [r[0] for r in cur.fetchall()]
            if higher:
                raise ValueError(f"a lite reseller cannot resell advanced customers: {higher}")
        cur.execute(
            "INSERT INTO resellers (reseller_id, tier, region, customers) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (reseller_id) DO UPDATE SET tier = EXCLUDED.tier,"
            " region = EXCLUDED.region, customers = EXCLUDED.customers",
            (reseller_id, tier, region, customers),
        )
        return _insert_key(cur, reseller_id, "reseller")


def create_user_key(conn: psycopg.Connection, user_id: str) -> str:
    """A key of a usage user (CONTRACT §8); the user itself is the usage-billing service's."""
    with conn.transaction(), conn.cursor() as cur:
        return _insert_key(cur, user_id, "usage-user")


def set_rate_limit(
    conn: psycopg.Connection, key_id: str, rate: float | None, burst: float | None
) -> int:
    """Give a key its own limit (None: back to its tier's); returns how many keys changed.
    Services pick it up within the key cache time."""
    if rate is not None and (rate <= 0 or (burst is not None and burst < 1)):
        raise ValueError("rate must be > 0 and burst >= 1")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET rate_limit = %s, rate_burst = %s"
            " WHERE key_id = %s AND revoked_at IS NULL",
            (rate, burst if rate is not None else None, key_id),
        )
        return cur.rowcount


def create_role_key(conn: psycopg.Connection, owner_id: str, role: str) -> str:
    """A key for an internal role (usage-ingest)."""
    _check(role, ("usage-ingest",), "role")
    with conn.transaction(), conn.cursor() as cur:
        return _insert_key(cur, owner_id, role)


def list_keys(conn: psycopg.Connection) -> list[KeyInfo]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT owner_id, key_id, kind, created_at, revoked_at, rate_limit, rate_burst"
            " FROM api_keys"
            " ORDER BY owner_id, created_at"
        )
        return [KeyInfo(**row) for row in cur.fetchall()]


def revoke_key(conn: psycopg.Connection, key_id: str) -> int:
    """Revoke by public id; returns how many keys were revoked."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        return cur.rowcount
