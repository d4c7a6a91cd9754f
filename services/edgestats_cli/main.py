"""The `edgestats` command: migrations, roll-ups, demo data and API keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import psycopg

from edgestats_core import sharding
from edgestats_core.config import Settings, data_databases
from edgestats_core.migrations import (
    every_database,
    migrate,
    migrate_every_database,
    run_partition_maintenance,
)
from edgestats_core.tenancy import api_keys


def _url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from edgestats_stack.stack import REPO, database_url  # the local cluster of `make run`

    return database_url(REPO / ".run")[1]


def _settings() -> Settings:
    """DATABASE_URL (or the local cluster) and EDGESTATS_REGION_DATABASES."""
    return Settings.from_env(database_url=_url())


def cmd_migrate(args: argparse.Namespace) -> None:
    # the home database and every region's (a sharded region's shards)
    print("\n".join(migrate_every_database(_settings())) or "nothing to apply")


def cmd_maintain(args: argparse.Namespace) -> None:
    for url in every_database(_settings()):
        run_partition_maintenance(url)
    print("partitions maintained")


def cmd_rollup(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from metrics_service import rollups

    start, end = (datetime.fromisoformat(t).astimezone(UTC) for t in (args.start, args.end))
    if end <= start:
        raise ValueError("--to must be later than --from")
    settings = _settings()
    databases = sharding.labelled(data_databases(settings.database_url, settings.region_urls))
    for regions, url in databases.items():
        # which database, when there are several
        label = f"{regions}  " if len(databases) > 1 else ""
        for hour in rollups.roll_up_interval(url, start, end, from_raw=args.from_raw):
            read = hour.from_minutes.isoformat() if hour.from_minutes else "no raw beacon"
            print(f"{label}{hour.hour.isoformat()}  {hour.raw_beacons} beacons"
                  f"  (read raw from {read})")


def cmd_shard(args: argparse.Namespace) -> None:
    for url in args.shard:
        print("\n".join(migrate(url)) or f"shard migrated already: {url}")
        run_partition_maintenance(url)
    sharding.create_coordinator(args.coordinator, args.shard)
    print(f"coordinator over {len(args.shard)} shards, {sharding.BUCKETS} buckets: give it as"
          " the region's URL in EDGESTATS_REGION_DATABASES")


def cmd_demo_data(args: argparse.Namespace) -> None:
    from edgestats_cli.demo_loader import load_demo

    print(f"{asyncio.run(load_demo(_url(), hours=args.hours))} beacons loaded")


def cmd_keys_create(args: argparse.Namespace) -> None:
    with psycopg.connect(_url()) as conn:
        if args.customer:
            if not args.region:
                sys.exit("--region is required with --customer")
            key = api_keys.create_customer_key(conn, args.customer, args.region, args.tier)
        elif args.reseller:
            customers = [c for c in (args.customers or "").split(",") if c]
            key = api_keys.create_reseller_key(
                conn, args.reseller, customers, args.tier, args.region
            )
        elif args.role:
            key = api_keys.create_role_key(conn, args.owner or args.role, args.role)
        else:
            sys.exit("one of --customer, --reseller or --role is required")
        if args.rate is not None:
            api_keys.set_rate_limit(conn, api_keys.key_id_of(key), args.rate, args.burst)
    print("the key is shown once; store it now:")
    print(key)


def cmd_keys_list(args: argparse.Namespace) -> None:
    with psycopg.connect(_url()) as conn:
        for k in api_keys.list_keys(conn):
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            limit = f"{k.rate_limit:g}/s burst {k.rate_burst:g}" if k.rate_limit else "tier limit"
            print(f"{k.key_id}\t{k.kind}\t{k.owner_id}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}"
                  f"\t{limit}")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    with psycopg.connect(_url()) as conn:
        count = api_keys.revoke_key(conn, args.key_id)
    if not count:
        sys.exit(f"no active key {args.key_id}")
    print(f"revoked {args.key_id}")


def cmd_keys_limit(args: argparse.Namespace) -> None:
    if args.tier_default and args.rate is not None:
        sys.exit("--rate and --tier-default exclude each other")
    if not args.tier_default and args.rate is None:
        sys.exit("give --rate (and --burst) or --tier-default")
    with psycopg.connect(_url()) as conn:
        count = api_keys.set_rate_limit(conn, args.key_id, args.rate, args.burst)
    if not count:
        sys.exit(f"no active key {args.key_id}")
    print(f"{args.key_id}: " + (f"{args.rate:g}/s, burst {args.burst or args.rate:g}"
                                if args.rate is not None else "tier limit"))


def cmd_usage_users_create(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from usage_billing_service import accounts

    with psycopg.connect(_url()) as conn:
        account = accounts.create_user(conn, args.user_id, datetime.now(UTC))
        key = api_keys.create_user_key(conn, account.user_id)
    state = "created" if account.created else "already exists, unchanged"
    print(f"user {account.user_id} {state}; default application"
          f" {account.default_application_id}")
    print("a key for this user is shown once; store it now:")
    print(key)


def cmd_usage_apps_create(args: argparse.Namespace) -> None:
    from usage_billing_service import accounts

    with psycopg.connect(_url()) as conn:
        created = accounts.create_application(conn, args.user, args.application_id)
    print(f"application {args.application_id} of user {args.user}"
          f" {'created' if created else 'already exists'}")


def cmd_usage_clients_create(args: argparse.Namespace) -> None:
    from edgestats_core.tenancy import oauth
    from usage_billing_service import accounts

    with psycopg.connect(_url()) as conn:
        if not accounts.user_exists(conn, args.user):
            raise ValueError(f"unknown user {args.user!r}: create it with `usage users create`")
        client_id, secret = oauth.create_client(conn, args.user)
    print(f"OAuth client of user {args.user}; the secret is shown once, store it now:")
    print(f"{client_id} {secret}")


def _usage_parser(sub: argparse._SubParsersAction) -> None:
    usage = sub.add_parser("usage", help="usage-billing users, applications, OAuth clients")
    kinds = usage.add_subparsers(dest="usage", required=True)
    users = kinds.add_parser("users", help="usage users").add_subparsers(dest="users",
                                                                         required=True)
    user = users.add_parser("create", help="create a user, its default application and a"
                            " monthly subscription; prints a key on the last line")
    user.add_argument("user_id")
    user.set_defaults(func=cmd_usage_users_create)
    apps = kinds.add_parser("apps", help="applications").add_subparsers(dest="apps",
                                                                        required=True)
    app = apps.add_parser("create", help="add an application to a user")
    app.add_argument("--user", required=True)
    app.add_argument("application_id")
    app.set_defaults(func=cmd_usage_apps_create)
    clients = kinds.add_parser("clients", help="OAuth clients").add_subparsers(
        dest="clients", required=True)
    client = clients.add_parser("create", help="create an OAuth client of a user; prints"
                                " CLIENT_ID CLIENT_SECRET on the last line")
    client.add_argument("--user", required=True)
    client.set_defaults(func=cmd_usage_clients_create)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edgestats", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("maintain", help="create partitions ahead, drop expired ones").set_defaults(
        func=cmd_maintain
    )
    rollup = sub.add_parser("rollup", help="publish the hours of [--from, --to) to the"
                            " historical layers (what the hourly DAG does)")
    rollup.add_argument("--from", dest="start", required=True, help="ISO-8601 instant")
    rollup.add_argument("--to", dest="end", required=True, help="ISO-8601 instant (exclusive)")
    rollup.add_argument("--from-raw", action="store_true",
                        help="recompute every minute row from raw beacons")
    rollup.set_defaults(func=cmd_rollup)
    shard = sub.add_parser("shard", help="make an empty database the coordinator of a region"
                           " sharded by customer over the given databases (migrated first)")
    shard.add_argument("--coordinator", required=True, help="URL of an empty database")
    shard.add_argument("--shard", action="append", required=True, help="URL, once per shard")
    shard.set_defaults(func=cmd_shard)
    demo = sub.add_parser("demo-data", help="load synthetic beacons of the demo customers")
    demo.add_argument("--hours", type=float, default=3.0)
    demo.set_defaults(func=cmd_demo_data)
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="create a key; prints it alone on the last line")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer")
    who.add_argument("--reseller")
    who.add_argument("--role", choices=["usage-ingest"])
    create.add_argument("--customers", help="reseller: comma-separated customer ids")
    create.add_argument("--region", choices=["americas", "emea", "apac"])
    create.add_argument("--tier", choices=["lite", "advanced"], default="lite")
    create.add_argument("--owner", help="role keys: who holds it")
    create.add_argument("--rate", type=float, help="the key's own requests/s (default: tier's)")
    create.add_argument("--burst", type=float, help="the key's own burst (default: --rate)")
    create.set_defaults(func=cmd_keys_create)
    keys.add_parser("list", help="list keys (ids only)").set_defaults(func=cmd_keys_list)
    limit = keys.add_parser("limit", help="give a key its own rate limit, or its tier's again")
    limit.add_argument("key_id")
    limit.add_argument("--rate", type=float, help="requests/s sustained")
    limit.add_argument("--burst", type=float, help="bucket size (default: --rate)")
    limit.add_argument("--tier-default", action="store_true", help="drop the key's own limit")
    limit.set_defaults(func=cmd_keys_limit)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)
    _usage_parser(sub)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
