"""`python -m edgestats_stack up|down`: what `make run` and `make stop` do."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import psycopg

from edgestats_cli import demo_loader
from edgestats_cli.demo_data import DemoCustomer
from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack import postgres, topology
from edgestats_stack.processes import spawn, stop_all
from edgestats_stack.stack import REPO, database_url, prepare_database, start_stack

RUN_DIR = REPO / ".run"
CLUSTER_FILE = RUN_DIR / "cluster.json"  # the databases `make cluster` started


def up(port: int) -> None:
    stop_all(RUN_DIR)
    CLUSTER_FILE.unlink(missing_ok=True)
    _, db_url = database_url(RUN_DIR)
    applied = prepare_database(db_url)
    print(f"database ready ({len(applied)} migrations applied)")
    serve(db_url, port, {}, [demo_loader.DEMO_CUSTOMERS[0]], [f"  database        : {db_url}"])


def cluster(port: int) -> None:
    """`make run` on the topology of docs/scaling.md: the home database in `make run`'s
    cluster, a cluster per region, a streaming standby of emea serving its reads, americas
    sharded over two shard clusters behind a coordinator."""
    stop_all(RUN_DIR)
    base = int(os.environ.get("EDGESTATS_PG_PORT", "55432"))
    built = topology.build(RUN_DIR, topology.default_ports(base),
                           postgres.ensure_cluster(RUN_DIR, base))
    print("databases ready")
    env = built.env()
    os.environ.update(env)  # the demo loader and feed write each customer to its region
    # for `make airflow`, which then rolls this topology's databases
    CLUSTER_FILE.write_text(json.dumps({"home": built.home, "env": env}))
    serve(built.home, port, env, list(demo_loader.DEMO_CUSTOMERS), built.describe())


def serve(db_url: str, port: int, env: dict[str, str],
          customers: list[DemoCustomer], databases: list[str]) -> None:
    """Load the demo data, make a key per customer, start the services, Envoy and the demo
    feed, print where everything is."""
    loaded = asyncio.run(demo_loader.load_demo(db_url))
    print(f"demo data: {loaded} beacons")
    keys = {}
    with psycopg.connect(db_url) as conn:
        for customer in customers:
            keys[customer] = create_customer_key(conn, customer.customer_id, customer.region,
                                                 customer.tier)
    first = customers[0]
    (RUN_DIR / "demo-key").write_text(keys[first] + "\n")
    stack = start_stack(RUN_DIR, db_url, port=port, detach=True, env=env)
    # the demo keeps flowing (one 5 s window at a time) so that time=live has data
    spawn("demo_feed", [sys.executable, "-m", "edgestats_cli.demo_feed"], RUN_DIR,
          {"DATABASE_URL": db_url, **env}, detach=True)
    base, auth = stack.http_url, f'-H "Authorization: Bearer {keys[first]}"'
    channel = demo_loader.first_channel(first)
    lines = [
        "",
        "edgestats is running.",
        f"  JSON API + gRPC : {base}   (gRPC h2c on the same port, reflection on)",
        f"  API reference   : {base}/analytics/docs/",
        f"  metrics         : {stack.metrics_url}   (Prometheus; Envoy's own:"
        f" {stack.admin_url}/stats/prometheus)",
        *databases,
        f"  logs            : {RUN_DIR / 'logs'}",
    ]
    for customer in customers:
        lines += [f"demo key of {customer.customer_id} ({customer.tier}, {customer.region})"
                  + (", also in .run/demo-key:" if customer is first else ":"), keys[customer]]
    lines += [
        "",
        "try:",
        f"  curl -s {base}/ping",
        f'  curl -s {auth} "{base}/summary?time=1h"',
        f'  curl -s {auth} "{base}/analytics/legacy/stats/throughput/agg?time=10m&source=p2p"',
        f'  curl -s -H "Authorization: {keys[first]}" "{base}/channels/{channel}/summary'
        '?time=24h&page=0"',
        "stop with: make stop",
    ]
    print("\n".join(lines))


def airflow() -> None:
    """Airflow on `make run`'s database, or on `make cluster`'s databases when it runs."""
    from edgestats_stack import airflow as airflow_stack

    admin, db_url = database_url(RUN_DIR)
    if CLUSTER_FILE.exists():
        started = json.loads(CLUSTER_FILE.read_text())
        db_url = started["home"]
        os.environ.update(started["env"])  # written into airflow.cfg's [edgestats]
    prepare_database(db_url)
    airflow_stack.up(RUN_DIR, admin, db_url)


def down() -> None:
    stop_all(RUN_DIR)
    CLUSTER_FILE.unlink(missing_ok=True)
    if not os.environ.get("DATABASE_URL"):
        topology.stop(RUN_DIR)  # what `make cluster` started, if any
        postgres.stop_cluster(RUN_DIR)
    print("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="edgestats_stack")
    parser.add_argument("command", choices=["up", "cluster", "down", "airflow"])
    default_port = int(os.environ.get("EDGESTATS_HTTP_PORT", 8080))
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    {"up": lambda: up(args.port), "cluster": lambda: cluster(args.port), "down": down,
     "airflow": airflow}[args.command]()


if __name__ == "__main__":
    main()
