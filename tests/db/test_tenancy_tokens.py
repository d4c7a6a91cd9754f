"""Keys and OAuth tokens resolve to principals through the shared resolver (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from edgestats_core.db import Database
from edgestats_core.errors import NotAuthenticated
from edgestats_core.tenancy import api_keys, oauth
from edgestats_core.tenancy.interceptor import KeyResolver

pytestmark = pytest.mark.db


def run(db_url: str, work):
    async def go():
        db = Database(db_url, 1, 1)
        await db.open()
        try:
            return await work(db)
        finally:
            await db.close()
    return asyncio.run(go())


async def resolve(db: Database, token: str, ttl: float = 0.0):
    return await KeyResolver(db, ttl).resolve(f"Bearer {token}")


def test_a_user_key_resolves_to_the_user(db_url):
    user = f"u-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as conn:
        key = api_keys.create_user_key(conn, user)
    principal = run(db_url, lambda db: resolve(db, key))
    assert principal.is_usage_user and principal.user_id == user and principal.customer_id is None


def test_client_credentials_give_a_token_of_the_user(db_url):
    user = f"u-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, user)

    async def work(db):
        token, expires_in = await oauth.issue_token(db, client_id, secret, 60)
        return token, expires_in, await resolve(db, token)

    token, expires_in, principal = run(db_url, work)
    assert token.startswith(oauth.TOKEN_PREFIX) and expires_in == 60
    assert principal.user_id == user and principal.key_id == f"oauth:{client_id}"


@pytest.mark.parametrize("wrong", ["secret", "client"])
def test_a_wrong_secret_or_client_gets_no_token(db_url, wrong):
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, f"u-{uuid.uuid4().hex[:8]}")
    if wrong == "secret":
        secret += "x"
    else:
        client_id = "esc_unknown"
    with pytest.raises(oauth.InvalidClient):
        run(db_url, lambda db: oauth.issue_token(db, client_id, secret, 60))


def test_expired_tokens_and_revoked_clients_stop_working(db_url):
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, f"u-{uuid.uuid4().hex[:8]}")
    first, _ = run(db_url, lambda db: oauth.issue_token(db, client_id, secret, 60))
    second, _ = run(db_url, lambda db: oauth.issue_token(db, client_id, secret, 60))
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE oauth_access_tokens SET expires_at = now() - interval '1 s'"
                     " WHERE token_hash = %s", (api_keys.hash_key(first),))
    with pytest.raises(NotAuthenticated):
        run(db_url, lambda db: resolve(db, first))
    assert run(db_url, lambda db: resolve(db, second)).user_id
    with psycopg.connect(db_url) as conn:
        assert oauth.revoke_client(conn, client_id) == 1
    with pytest.raises(NotAuthenticated):
        run(db_url, lambda db: resolve(db, second))


def test_a_cached_token_is_not_served_past_its_expiry(db_url):
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, f"u-{uuid.uuid4().hex[:8]}")

    async def work(db):
        token, _ = await oauth.issue_token(db, client_id, secret, 1)
        resolver = KeyResolver(db, 60.0)
        assert (await resolver.resolve(f"Bearer {token}")).user_id
        await asyncio.sleep(1.2)
        with pytest.raises(NotAuthenticated):
            await resolver.resolve(f"Bearer {token}")

    run(db_url, work)
