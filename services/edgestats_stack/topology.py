"""The multi-database topology of `make cluster` (and of the test suites run against it), on
one machine: the home database, a PostgreSQL cluster per region, a streaming standby of emea
serving its reads, americas sharded over two shard clusters behind a coordinator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from edgestats_core import sharding
from edgestats_stack import postgres
from edgestats_stack.stack import prepare_database

SMALL = "shared_buffers = 128MB\n"
# (cluster name, port offset from the home cluster's), in start order; stopped in reverse
REGION_CLUSTERS = (("pg-emea", 1), ("pg-americas", 2), ("pg-apac", 3))
STANDBY = ("pg-emea-standby", 4)
SHARDS = (("pg-americas-shard-1", 5), ("pg-americas-shard-2", 6))
CLUSTERS = [name for name, _ in (*REGION_CLUSTERS, STANDBY, *SHARDS)]


@dataclass
class Topology:
    home: str                                   # keys, customers, resellers, usage
    regions: dict[str, str]                     # region -> its primary (americas: coordinator)
    replicas: dict[str, str] = field(default_factory=dict)
    shards: dict[str, list[str]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The services' settings for this topology."""
        return {
            "EDGESTATS_REGION_DATABASES": " ".join(f"{r}={u}" for r, u in self.regions.items()),
            "EDGESTATS_REGION_REPLICAS": " ".join(f"{r}={u}" for r, u in self.replicas.items()),
        }

    def data_urls(self) -> list[str]:
        """Every database holding beacons (shards, not the coordinator)."""
        return sharding.expand(list(self.regions.values()))

    def describe(self) -> list[str]:
        lines = [f"  home database   : {self.home}  (keys, customers, usage)"]
        for region, url in self.regions.items():
            role = " (coordinator)" if region in self.shards else ""
            lines.append(f"  {region:<16}: {url}{role}")
            lines += [f"    shard {i}       : {s}" for i, s in enumerate(self.shards.get(region,
                                                                                   []), 1)]
            if region in self.replicas:
                lines.append(f"    standby       : {self.replicas[region]}  (reads while fresh)")
        return lines


def default_ports(base_port: int) -> dict[str, int]:
    """`make cluster`'s ports: the home cluster's (EDGESTATS_PG_PORT) plus each offset."""
    return {name: base_port + offset for name, offset in (*REGION_CLUSTERS, STANDBY, *SHARDS)}


def build(run_dir: Path, ports: dict[str, int], home_admin: str,
          home_db: str = "edgestats_home", read_your_writes: bool = False) -> Topology:
    """Start (or reuse) every cluster under run_dir on `ports` (cluster name -> port),
    migrate, shard americas, start the emea standby; the home database is `home_db` on the
    cluster of `home_admin`. `read_your_writes`: emea commits wait until the standby has
    applied them (synchronous_commit = remote_apply), so a read right after an accepted
    write sees it on the standby too (the test suites' assumption; a standby down then
    stalls emea's writes, so `make cluster` keeps replication asynchronous)."""
    home = postgres.create_database(home_admin, home_db)
    regions = {}
    for (name, _), region in zip(REGION_CLUSTERS, ("emea", "americas", "apac"), strict=True):
        admin = postgres.ensure_cluster(run_dir, ports[name], name, SMALL)
        regions[region] = postgres.create_database(admin, "edgestats")
    shards = []
    for name, _ in SHARDS:
        admin = postgres.ensure_cluster(run_dir, ports[name], name, SMALL)
        shards.append(postgres.create_database(admin, "edgestats"))
        prepare_database(shards[-1], ())
    sharding.create_coordinator(regions["americas"], shards)
    prepare_database(home, tuple(regions.items()))  # home, emea, apac (americas: its shards)
    name, _ = STANDBY
    standby = postgres.with_database(
        postgres.ensure_standby(run_dir, name, ports[name], ports[REGION_CLUSTERS[0][0]]),
        "edgestats")
    if read_your_writes:
        with psycopg.connect(regions["emea"], autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            conn.execute("SELECT pg_reload_conf()")
    return Topology(home, regions, {"emea": standby}, {"americas": shards})


def stop(run_dir: Path) -> None:
    """Stop every cluster of the topology that runs (the home cluster is the caller's)."""
    for name in reversed(CLUSTERS):
        postgres.stop_cluster(run_dir, name)
