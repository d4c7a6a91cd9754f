"""`python -m edgestats_stack up|down`: what `make run` and `make stop` do."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import psycopg

from edgestats_cli import demo_loader
from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack import postgres
from edgestats_stack.processes import spawn, stop_all
from edgestats_stack.stack import REPO, database_url, prepare_database, start_stack

RUN_DIR = REPO / ".run"


def up(port: int) -> None:
    stop_all(RUN_DIR)
    _, db_url = database_url(RUN_DIR)
    applied = prepare_database(db_url)
    print(f"database ready ({len(applied)} migrations applied)")
    loaded = asyncio.run(demo_loader.load_demo(db_url))
    print(f"demo data: {loaded} beacons")
    customer = demo_loader.DEMO_CUSTOMERS[0]
    with psycopg.connect(db_url) as conn:
        key = create_customer_key(conn, customer.customer_id, customer.region, customer.tier)
    (RUN_DIR / "demo-key").write_text(key + "\n")
    stack = start_stack(RUN_DIR, db_url, port=port, detach=True)
    # the demo keeps flowing (one 5 s window at a time) so that time=live has data
    spawn("demo_feed", [sys.executable, "-m", "edgestats_cli.demo_feed"], RUN_DIR,
          {"DATABASE_URL": db_url}, detach=True)
    base, auth = stack.http_url, f'-H "Authorization: Bearer {key}"'
    channel = demo_loader.first_channel(customer)
    lines = [
        "",
        "edgestats is running.",
        f"  JSON API + gRPC : {base}   (gRPC h2c on the same port, reflection on)",
        f"  API reference   : {base}/analytics/docs/",
        f"  database        : {db_url}",
        f"  logs            : {RUN_DIR / 'logs'}",
        f"demo key of {customer.customer_id} ({customer.tier}, {customer.region}),"
        " also in .run/demo-key:",
        key,
        "",
        "try:",
        f"  curl -s {base}/ping",
        f'  curl -s {auth} "{base}/summary?time=1h"',
        f'  curl -s {auth} "{base}/analytics/legacy/stats/throughput/agg?time=10m&source=p2p"',
        f'  curl -s -H "Authorization: {key}" "{base}/channels/{channel}/summary?time=24h&page=0"',
        "stop with: make stop",
    ]
    print("\n".join(lines))


def airflow() -> None:
    from edgestats_stack import airflow as airflow_stack

    admin, db_url = database_url(RUN_DIR)
    prepare_database(db_url)
    airflow_stack.up(RUN_DIR, admin, db_url)


def down() -> None:
    stop_all(RUN_DIR)
    if not os.environ.get("DATABASE_URL"):
        postgres.stop_cluster(RUN_DIR)
    print("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="edgestats_stack")
    parser.add_argument("command", choices=["up", "down", "airflow"])
    default_port = int(os.environ.get("EDGESTATS_HTTP_PORT", 8080))
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    {"up": lambda: up(args.port), "down": down, "airflow": airflow}[args.command]()


if __name__ == "__main__":
    main()
