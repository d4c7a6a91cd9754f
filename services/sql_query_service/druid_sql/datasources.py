"""The SQL datasources `sdk-{region}-{layer}` and the PostgreSQL each one reads.

What a datasource is made of (with rollups.py for the historical scans that fit rollup rows):

- `realtime`: the raw beacons, one row per beacon, Druid column names.
- `historical-minute` / `historical-hour`: a scan that fits rollup rows reads the
  rollups plus the not-yet-rolled tail (`rollups.py`, bound at run time to the rolled
  hours); any other scan reads `source_query` below: the raw beacons *viewed at the
  bucket's granularity* (`__time` is the bucket start, the per-session columns are gone,
  CONTRACT §4), so SUM, COUNT, MIN, MAX, AVG and COUNT(DISTINCT SessionId) of a
  bucket-aligned query give the realtime answers, within the raw retention. `SessionId`
  stays readable only inside COUNT(DISTINCT …)/APPROX_COUNT_DISTINCT (checked by
  columns.py).

Only the caller's tier's columns are exposed, so even a rule bug cannot read
an advanced column for a lite caller.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from edgestats_core.beacon_columns import COLUMNS, Column
from edgestats_core.tenancy.principals import Principal

NAME = re.compile(r"^sdk-(americas|emea|apac)-(realtime|historical-minute|historical-hour)$")
LAYERS = ("realtime", "historical-minute", "historical-hour")
BUCKET_SECONDS = {"historical-minute": 60, "historical-hour": 3600}
# Columns the historical layers do not have (CONTRACT §4).
PER_SESSION = frozenset({"SessionId", "NodeId", "ReceiveFromNodeId", "Ip", "Latitude", "Longitude"})
TABLE = "public.beacons"


@dataclass(frozen=True)
class Datasource:
    name: str
    region: str
    layer: str

    @property
    def historical(self) -> bool:
        return self.layer != "realtime"


def parse_name(name: str) -> Datasource | None:
    """The datasource a table name designates (case-sensitive), or None."""
    match = NAME.match(name)
    return Datasource(name, match.group(1), match.group(2)) if match else None


def names_for(principal: Principal) -> list[str]:
    """The caller's datasources: its region, every layer (a region-less reseller: all regions)."""
    regions = [principal.region] if principal.region else ["americas", "emea", "apac"]
    return [f"sdk-{r}-{layer}" for r in regions for layer in LAYERS]


def visible_columns(tier: str, source: Datasource) -> list[Column]:
    """The columns `SELECT *` shows and the tier may name, in CONTRACT §3 order."""
    allowed = [c for c in COLUMNS if tier == "advanced" or c.tier == "lite"]
    if source.historical:
        allowed = [c for c in allowed if c.druid not in PER_SESSION]
    return allowed


def _projection(column: Column, source: Datasource) -> str:
    quoted = f'"{column.name}"'
    if column.druid == "__time" and source.historical:
        seconds = BUCKET_SECONDS[source.layer]
        quoted = f"date_bin(interval '{seconds} seconds', \"time\", timestamptz 'epoch')"
    return f'{quoted} AS "{column.druid}"'


@functools.cache
def source_sql(layer: str, tier: str) -> str:
    """The PostgreSQL text of `source_query`, rendered once per layer and tier."""
    return source_query(Datasource(f"sdk-emea-{layer}", "emea", layer), tier).sql(
        dialect="postgres", identify=True
    )


def source_query(source: Datasource, tier: str) -> exp.Expression:
    """The SELECT a datasource reference is replaced with (columns named as in Druid)."""
    columns = [c for c in COLUMNS if tier == "advanced" or c.tier == "lite"]
    if source.historical:  # SessionId stays for COUNT(DISTINCT SessionId)
        columns = [c for c in columns if c.druid not in PER_SESSION or c.druid == "SessionId"]
    select = ", ".join(_projection(c, source) for c in columns)
    return sqlglot.parse_one(f"SELECT {select} FROM {TABLE}", read="postgres")
