"""OAuth 2.0 client credentials (RFC 6749 §4.4) for usage users: clients and access tokens.

A client belongs to one usage user; its secret is shown once and stored as a SHA-256
hash. Access tokens are random, stored as hashes with their expiry, and resolved by the
shared interceptor exactly like API keys (api_keys.LOOKUP_SQL).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import psycopg

from edgestats_core.db import Database
from edgestats_core.tenancy.api_keys import hash_key

CLIENT_PREFIX = "esc_"
TOKEN_PREFIX = "est_"


class InvalidClient(Exception):
    """Unknown or revoked client, or a wrong secret (RFC 6749 §5.2 invalid_client)."""


def create_client(conn: psycopg.Connection, user_id: str) -> tuple[str, str]:
    """A new client of the user: (client_id, client_secret); the secret is shown once."""
    client_id = CLIENT_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "INSERT INTO oauth_clients (user_id, client_id, secret_hash) VALUES (%s, %s, %s)",
            (user_id, client_id, hash_key(secret)),
        )
    return client_id, secret


def revoke_client(conn: psycopg.Connection, client_id: str) -> int:
    """Revoke a client; its tokens stop working within the key cache time."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE oauth_clients SET revoked_at = now()"
            " WHERE client_id = %s AND revoked_at IS NULL",
            (client_id,),
        )
        return cur.rowcount


ISSUE_SQL = """
WITH client AS (
    SELECT user_id, client_id FROM oauth_clients
    WHERE client_id = %(client_id)s AND revoked_at IS NULL AND secret_hash = %(secret_hash)s
)
INSERT INTO oauth_access_tokens (user_id, token_hash, client_id, expires_at)
SELECT user_id, %(token_hash)s, client_id, now() + %(ttl)s FROM client
RETURNING user_id
"""


async def issue_token(
    db: Database, client_id: str, client_secret: str, ttl_seconds: int
) -> tuple[str, int]:
    """A new access token of the client's user and its lifetime in seconds."""
    if not client_id or not client_secret:
        raise InvalidClient()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    # the secret is compared as a hash inside PostgreSQL: equal hashes of 256-bit random
    # secrets, no timing signal about the secret itself
    rows = await db.fetch(ISSUE_SQL, {
        "client_id": client_id, "secret_hash": hash_key(client_secret),
        "token_hash": hash_key(token), "ttl": timedelta(seconds=ttl_seconds),
    })
    if not rows:
        raise InvalidClient()
    return token, ttl_seconds


def delete_expired_tokens(conn: psycopg.Connection) -> int:
    """Daily maintenance: tokens past their expiry are useless; returns how many went."""
    with conn.transaction():
        return conn.execute(
            "DELETE FROM oauth_access_tokens WHERE expires_at < now() - interval '1 day'"
        ).rowcount
