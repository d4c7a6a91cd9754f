"""Usage accounts and the event store against real PostgreSQL: creation is safe to repeat,
conflicts are clear errors, an event id is stored once, old dedup ids are forgotten."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from edgestats_core.db import Database
from edgestats_core.tenancy import oauth
from edgestats_core.tenancy.api_keys import LOOKUP_SQL, hash_key
from edgestats_stack.stack import REPO
from usage_billing_service import accounts, event_store
from usage_billing_service.event_validation import Account

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)


def new_user(db_url: str) -> str:
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url) as conn:
        assert accounts.create_user(conn, user_id, NOW).created
    return user_id


def test_a_user_gets_a_default_application_and_a_monthly_subscription(db_url):
    user_id = new_user(db_url)
    with psycopg.connect(db_url) as conn:
        apps = conn.execute("SELECT application_id, is_default FROM usage_applications"
                            " WHERE user_id = %s", (user_id,)).fetchall()
        subs = conn.execute("SELECT starts_at, ends_at, period_months FROM usage_subscriptions"
                            " WHERE user_id = %s", (user_id,)).fetchall()
    assert apps == [(accounts.default_application_id(user_id), True)]
    assert subs == [(datetime(2026, 11, 25, tzinfo=UTC), None, 1)]


def test_creating_a_user_again_changes_nothing(db_url):
    user_id = new_user(db_url)
    with psycopg.connect(db_url) as conn:
        again = accounts.create_user(conn, user_id, NOW + timedelta(days=40))
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM usage_applications WHERE user_id = %(u)s),"
            " (SELECT count(*) FROM usage_subscriptions WHERE user_id = %(u)s)",
            {"u": user_id}).fetchone()
    assert again == accounts.UserAccount(user_id, accounts.default_application_id(user_id),
                                         created=False)
    assert counts == (1, 1)


def test_applications(db_url):
    user_id, other = new_user(db_url), new_user(db_url)
    app = f"app-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as conn:
        assert accounts.create_application(conn, user_id, app) is True
        assert accounts.create_application(conn, user_id, app) is False  # repeat: no change
        with pytest.raises(ValueError, match="belongs to another user"):
            accounts.create_application(conn, other, app)
        with pytest.raises(ValueError, match="another user"):
            accounts.create_application(conn, other, accounts.default_application_id(user_id))
        with pytest.raises(ValueError, match="unknown user"):
            accounts.create_application(conn, "u-nobody-" + uuid.uuid4().hex, "app-x1")
        with pytest.raises(ValueError, match="application id"):
            accounts.create_application(conn, user_id, "bad id")
        owners = conn.execute("SELECT user_id FROM usage_applications WHERE application_id = %s",
                              (app,)).fetchall()
    assert owners == [(user_id,)]


def _run(db_url: str, coro_factory):
    async def run():
        db = Database(db_url, 1, 2)
        await db.open()
        try:
            return await coro_factory(db)
        finally:
            await db.close()
    return asyncio.run(run())


def test_accounts_lookup(db_url):
    user_id = new_user(db_url)
    with psycopg.connect(db_url) as conn:
        accounts.create_application(conn, user_id, f"a-{user_id}")
    found = _run(db_url, lambda db: event_store.accounts(db, {user_id, "u-nobody"}))
    default = accounts.default_application_id(user_id)
    assert found == {user_id: Account(default, frozenset({default, f"a-{user_id}"}))}


def _row(event_id: str, user_id: str, app: str, size: int, minute: int = 0) -> tuple:
    return (event_id, "conversion", user_id, app, size, NOW + timedelta(minutes=minute), None)


def test_an_event_id_is_stored_once(db_url):
    user_id = new_user(db_url)
    app = accounts.default_application_id(user_id)
    ids = [f"{user_id}-e{i}" for i in range(3)]
    first = [_row(ids[0], user_id, app, 10), _row(ids[1], user_id, app, 20),
             _row(ids[0], user_id, app, 99, minute=5)]  # same id again: the first one wins
    assert _run(db_url, lambda db: event_store.store(db, first)) == 2
    second = [_row(ids[1], user_id, app, 20), _row(ids[2], user_id, app, 30, minute=1)]
    assert _run(db_url, lambda db: event_store.store(db, second)) == 1
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT event_id, bytes FROM usage_events WHERE user_id = %s"
                              " ORDER BY event_id", (user_id,)).fetchall()
    assert stored == [(ids[0], 10), (ids[1], 20), (ids[2], 30)]


def test_concurrent_batches_sharing_ids_store_each_once(db_url):
    user_id = new_user(db_url)
    app = accounts.default_application_id(user_id)
    rows = [_row(f"{user_id}-c{i}", user_id, app, i) for i in range(300)]

    async def race(db):
        return await asyncio.gather(*(event_store.store(db, rows[::step] if step > 0
                                                        else rows[::-1])
                                      for step in (1, -1, 2)))
    inserted = _run(db_url, race)
    assert sum(inserted) == 300
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM usage_events WHERE user_id = %s",
                            (user_id,)).fetchone()[0] == 300


def test_old_dedup_ids_are_forgotten_but_exact_resends_still_count_once(db_url):
    user_id = new_user(db_url)
    app = accounts.default_application_id(user_id)
    old, recent = f"{user_id}-old", f"{user_id}-recent"
    _run(db_url, lambda db: event_store.store(db, [_row(old, user_id, app, 1),
                                                   _row(recent, user_id, app, 2)]))
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE usage_event_ids SET recorded_at = now() - interval '36 days'"
                     " WHERE event_id = %s", (old,))
    assert event_store.forget_expired_ids(db_url) >= 1
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT event_id FROM usage_event_ids WHERE event_id = ANY(%s)",
                            ([old, recent],)).fetchall()
    assert left == [(recent,)]
    # the exact event again: its id is new to the window, but usage_events still has it
    assert _run(db_url, lambda db: event_store.store(db, [_row(old, user_id, app, 1)])) == 0


# --- the CLI (CONTRACT §11) ------------------------------------------------------------------


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db_url,
           "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("services", "gen"))}
    return subprocess.run([sys.executable, "-m", "edgestats_cli.main", "usage", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def resolve_key(db_url: str, key: str) -> dict | None:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return conn.execute(LOOKUP_SQL, {"digest": hash_key(key)}).fetchone()


def test_cli_users_create_prints_a_working_key_last(db_url):
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    done = cli(db_url, "users", "create", user_id)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    row = resolve_key(db_url, key)
    assert row is not None and (row["kind"], row["owner_id"]) == ("usage-user", user_id)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM usage_subscriptions WHERE user_id = %s"
                            " AND starts_at = date_trunc('day', now() AT TIME ZONE 'UTC')"
                            " AT TIME ZONE 'UTC'", (user_id,)).fetchone()[0] == 1
    again = cli(db_url, "users", "create", user_id)  # safe: a new key, nothing else
    assert again.returncode == 0 and "already exists" in again.stdout, again
    assert resolve_key(db_url, again.stdout.strip().splitlines()[-1])["owner_id"] == user_id
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM usage_applications WHERE user_id = %s",
                            (user_id,)).fetchone()[0] == 1


def test_cli_apps_create(db_url):
    user_id, other = new_user(db_url), new_user(db_url)
    app = f"app-{uuid.uuid4().hex[:8]}"
    assert cli(db_url, "apps", "create", "--user", user_id, app).returncode == 0
    assert cli(db_url, "apps", "create", "--user", user_id, app).returncode == 0
    refused = cli(db_url, "apps", "create", "--user", other, app)
    assert refused.returncode != 0 and "another user" in refused.stderr
    unknown = cli(db_url, "apps", "create", "--user", "u-nobody-x", "app-y")
    assert unknown.returncode != 0 and "unknown user" in unknown.stderr


def test_cli_clients_create_prints_id_and_secret_last(db_url):
    user_id = new_user(db_url)
    done = cli(db_url, "clients", "create", "--user", user_id)
    assert done.returncode == 0, done.stderr
    client_id, secret = done.stdout.strip().splitlines()[-1].split(" ")
    token, expires_in = _run(db_url, lambda db: oauth.issue_token(db, client_id, secret, 60))
    assert expires_in == 60 and resolve_key(db_url, token)["owner_id"] == user_id
    unknown = cli(db_url, "clients", "create", "--user", "u-nobody-x")
    assert unknown.returncode != 0 and "unknown user" in unknown.stderr


@pytest.mark.parametrize("args", [["users", "create", "bad id"], ["users", "create", ""],
                                  ["apps", "create", "--user", "u-x", "a/b"]])
def test_cli_refuses_bad_ids(db_url, args):
    done = cli(db_url, *args)
    assert done.returncode != 0 and "error:" in done.stderr, done
