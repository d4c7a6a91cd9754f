"""A region sharded by customer: a coordinator database whose customer tables are hash
partitions by `customer_id`, each a `postgres_fdw` foreign table on one of N shard databases.

Every shard is a complete region database (the whole schema, its own rollers, roll-up state,
late marks and partition maintenance). The services write and read a customer's data on its
shard directly, the shard the coordinator routes the customer to (`ROUTE_SQL`, PostgreSQL's
own hash partitioning, asked with `satisfies_hash_partition`): the ingest transaction, the
rollers' fence and the roll-up state a query reads all stay in one database. The coordinator
is the routing table and a cross-shard SQL surface for operators, with aggregates and the
sketch functions pushed down to the shards (`extensions 'hll, tdigest'`, partitionwise
aggregation, `async_capable`).

`BUCKETS` hash partitions per table, spread round-robin over the shards, so that a bucket
can move to another shard later (docs/scaling.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# The customer tables of a region database: raw beacons and every layer derived from them.
SHARDED_TABLES = ("beacons", "beacons_minute", "beacons_minute_totals", "beacons_hour",
                  "beacons_hour_totals", "beacons_live", "beacons_live_devices")
BUCKETS = 16
SERVER_PREFIX = "edgestats_shard_"
# On each shard: one view per table and bucket holding only that bucket's rows (a foreign
# partition must never see another bucket's: a scan of two buckets of one shard would count
# rows twice), filtered by PostgreSQL's own hash routing through an empty hash-partitioned
# table of the same key (`satisfies_hash_partition` needs one).
BUCKET_SCHEMA = "edgestats_buckets"
PROBE = "routing"

# The foreign server holding a customer's bucket of `beacons`, by PostgreSQL's own routing.
ROUTE_SQL = r"""
SELECT s.srvname, s.srvoptions
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_foreign_table f ON f.ftrelid = c.oid
JOIN pg_foreign_server s ON s.oid = f.ftserver
CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                'modulus (\d+), remainder (\d+)') AS b(m)
WHERE i.inhparent = 'beacons'::regclass
  AND satisfies_hash_partition('beacons'::regclass, b.m[1]::int, b.m[2]::int, %s::text)
"""

SHARDS_SQL = ("SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname LIKE %s"
              " ORDER BY srvname")


def shard_url(coordinator_url: str, options: list[str] | None) -> str:
    """A shard's URL: the coordinator's credentials at the server's host, port and dbname."""
    given = dict(o.split("=", 1) for o in options or ())
    parts = urlsplit(coordinator_url)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"{given.get('host', parts.hostname)}:{given.get('port', parts.port or 5432)}"
    netloc = f"{userinfo}@{host}" if userinfo else host
    path = "/" + given.get("dbname", parts.path.lstrip("/"))
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def shard_urls(url: str) -> list[str]:
    """The shards of a coordinator, in server order; [] for an ordinary database."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(SHARDS_SQL, (SERVER_PREFIX + "%",)).fetchall()
    return [shard_url(url, options) for _, options in rows]


def expand(urls: list[str]) -> list[str]:
    """The databases that hold rows: each coordinator replaced by its shards (what the
    rollers, migrations and partition maintenance run on)."""
    out: list[str] = []
    for url in urls:
        out += shard_urls(url) or [url]
    return list(dict.fromkeys(out))


def labelled(databases: dict[str, str]) -> dict[str, str]:
    """Region labels -> URL with each coordinator replaced by its shards ("americas/shard-1")."""
    out: dict[str, str] = {}
    for label, url in databases.items():
        shards = shard_urls(url)
        out |= {f"{label}/shard-{i}": u for i, u in enumerate(shards, 1)} if shards else {
            label: url}
    return out


def _columns(shard: psycopg.Connection, table: str) -> sql.Composed:
    """The table's column definitions on a shard: names, types, NOT NULL and defaults
    (postgres_fdw sends every column: an INSERT through the coordinator that leaves one out
    must get the shard's default)."""
    rows = shard.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum", (table,)).fetchall()
    return sql.SQL(", ").join(
        sql.SQL("{} {}{}{}").format(
            sql.Identifier(name), sql.SQL(kind),
            sql.SQL(f" DEFAULT {default}" if default is not None else ""),
            sql.SQL(" NOT NULL" if not_null else ""))
        for name, kind, not_null, default in rows)


def _create_bucket_views(url: str, buckets: list[int], modulus: int) -> None:
    """On a shard: the schema of its bucket views, recreated (after a migration too)."""
    schema = sql.Identifier(BUCKET_SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(sql.SQL("CREATE TABLE {}.{} (customer_id text) PARTITION BY HASH"
                             " (customer_id)").format(schema, sql.Identifier(PROBE)))
        probe = sql.Literal(f"{BUCKET_SCHEMA}.{PROBE}")
        for table in SHARDED_TABLES:
            for bucket in buckets:
                conn.execute(sql.SQL(
                    "CREATE VIEW {}.{} AS SELECT * FROM public.{} WHERE"
                    " satisfies_hash_partition({}::regclass, {}, {}, customer_id)").format(
                    schema, sql.Identifier(f"{table}_b{bucket:02d}"), sql.Identifier(table),
                    probe, sql.Literal(modulus), sql.Literal(bucket)))


def create_coordinator(coordinator_url: str, shards: list[str], buckets: int = BUCKETS) -> None:
    """Make `coordinator_url` (an empty database) the coordinator of `shards` (migrated
    region databases): a foreign server per shard, and every customer table hash-partitioned
    into `buckets` foreign partitions, bucket r on shard r mod N. Idempotent: an existing
    coordinator is left as it is."""
    with psycopg.connect(coordinator_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('beacons')").fetchone()[0]:
            if not conn.execute(SHARDS_SQL, (SERVER_PREFIX + "%",)).fetchall():
                raise RuntimeError("the database holds beacons itself: a coordinator must"
                                   " start empty")
            return
        with conn.transaction():
            for extension in ("postgres_fdw", "hll", "tdigest"):
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                    sql.Identifier(extension)))
            for index, url in enumerate(shards):
                parts = urlsplit(url)
                server = sql.Identifier(f"{SERVER_PREFIX}{index + 1}")
                conn.execute(sql.SQL(
                    "CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {},"
                    " port {}, dbname {}, async_capable 'true', extensions 'hll, tdigest',"
                    " batch_size '1000', fetch_size '10000')").format(
                    server, sql.Literal(parts.hostname), sql.Literal(str(parts.port or 5432)),
                    sql.Literal(parts.path.lstrip("/"))))
                mapping = [sql.SQL("user {}").format(sql.Literal(parts.username or "postgres"))]
                if parts.password:
                    mapping.append(sql.SQL("password {}").format(sql.Literal(parts.password)))
                conn.execute(sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {}"
                                     " OPTIONS ({})").format(server, sql.SQL(", ").join(mapping)))
            with psycopg.connect(shards[0]) as first:
                columns = {table: _columns(first, table) for table in SHARDED_TABLES}
            for index, url in enumerate(shards):
                _create_bucket_views(url, [b for b in range(buckets)
                                           if b % len(shards) == index], buckets)
            for table in SHARDED_TABLES:
                conn.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY HASH (customer_id)")
                             .format(sql.Identifier(table), columns[table]))
                for bucket in range(buckets):
                    conn.execute(sql.SQL(
                        "CREATE FOREIGN TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {},"
                        " REMAINDER {}) SERVER {} OPTIONS (schema_name {}, table_name {})").format(
                        sql.Identifier(f"{table}_b{bucket:02d}"), sql.Identifier(table),
                        sql.Literal(buckets), sql.Literal(bucket),
                        sql.Identifier(f"{SERVER_PREFIX}{bucket % len(shards) + 1}"),
                        sql.Literal(BUCKET_SCHEMA), sql.Literal(f"{table}_b{bucket:02d}")))
            database = conn.execute("SELECT current_database()").fetchone()[0]
            for setting in ("enable_partitionwise_aggregate", "enable_partitionwise_join"):
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = on").format(
                    sql.Identifier(database), sql.Identifier(setting)))
