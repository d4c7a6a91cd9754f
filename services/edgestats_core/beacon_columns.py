"""The beacon's columns (CONTRACT §3): Druid name, our table column, type and tier, in one place.

This is the only module that maps Druid column names (`CustomerId`, `__time`)
to ours; the proto field names equal our column names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    druid: str    # the SQL datasource / JSON ingest name
    name: str     # our table column and Beacon proto field
    type: str     # time | string | bool | int | double
    tier: str = "lite"


def _c(druid: str, name: str, type_: str, tier: str = "lite") -> Column:
    return Column(druid, name, type_, tier)


COLUMNS: tuple[Column, ...] = (
    _c("__time", "time", "time"),
    _c("CustomerId", "customer_id", "string"),
    _c("ChannelId", "channel_id", "string"),
    _c("StreamId", "stream_id", "string"),
    _c("MaskedStreamUri", "masked_stream_uri", "string"),
    _c("StreamState", "stream_state", "string"),
    _c("Bitrate", "bitrate", "string"),
    _c("RepresentationId", "representation_id", "string"),
    _c("SessionId", "session_id", "string"),
    _c("Source", "source", "string"),
    _c("P2pCompatible", "p2p_compatible", "bool"),
    _c("PlayerState", "player_state", "string"),
    _c("VideoResolutionWidth", "video_resolution_width", "int"),
    _c("VideoResolutionHeight", "video_resolution_height", "int"),
    _c("ViewportWidth", "viewport_width", "int"),
    _c("ViewportHeight", "viewport_height", "int"),
    _c("CdnDownlinkThroughput", "cdn_downlink_throughput", "double"),
    _c("P2pDownlinkThroughput", "p2p_downlink_throughput", "double"),
    _c("TotalDownlinkThroughput", "total_downlink_throughput", "double"),
    _c("ViewingTime", "viewing_time", "double"),
    _c("StartingTime", "starting_time", "double"),
    _c("BufferHealth", "buffer_health", "double"),
    _c("DownlinkSpeed", "downlink_speed", "double"),
    _c("NodeId", "node_id", "string"),
    _c("ReceiveFromNodeId", "receive_from_node_id", "string"),
    _c("Latitude", "latitude", "double"),
    _c("Longitude", "longitude", "double"),
    _c("ResponseCdn", "response_cdn", "string"),
    _c("ContentSteeringPathway", "content_steering_pathway", "string"),
    _c("CdnResponseTime", "cdn_response_time", "double", "advanced"),
    _c("P2pResponseTime", "p2p_response_time", "double", "advanced"),
    _c("DroppedFrames", "dropped_frames", "int", "advanced"),
    _c("PlayingTime", "playing_time", "double", "advanced"),
    _c("BufferingTime", "buffering_time", "double", "advanced"),
    _c("AggregateBufferFillingRate", "aggregate_buffer_filling_rate", "double", "advanced"),
    _c("ConnectionType", "connection_type", "string", "advanced"),
    _c("OsName", "os_name", "string", "advanced"),
    _c("BrowserName", "browser_name", "string", "advanced"),
    _c("PlayerName", "player_name", "string", "advanced"),
    _c("AppName", "app_name", "string", "advanced"),
    _c("ConnectionStatus", "connection_status", "string", "advanced"),
    _c("NatType", "nat_type", "string", "advanced"),
    _c("UplinkCapacity", "uplink_capacity", "double", "advanced"),
    _c("Ip", "ip", "string", "advanced"),
    _c("Asn", "asn", "string", "advanced"),
    _c("AsName", "as_name", "string", "advanced"),
    _c("Country", "country", "string", "advanced"),
)

BY_DRUID: dict[str, Column] = {c.druid: c for c in COLUMNS}
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
REQUIRED: tuple[str, ...] = ("__time", "CustomerId", "SessionId", "Source")
SOURCES: tuple[str, ...] = ("cdn", "p2p")

# Columns that identify a session or a node: raw (realtime) data only, never rolled up.
PER_SESSION: frozenset[str] = frozenset(
    {"session_id", "node_id", "receive_from_node_id", "ip", "latitude", "longitude"}
)
# Rollup dimensions: every descriptive column but the tenant, time and per-session ones,
# plus the rendered video height (a small set of values the APIs group by).
DIMENSIONS: tuple[Column, ...] = tuple(
    c for c in COLUMNS
    if (c.type in ("string", "bool") or c.name == "video_resolution_height")
    and c.name not in PER_SESSION and c.name != "customer_id"
)
# Rollup measures: sum, count (non-null), min and max of every other numeric column.
MEASURES: tuple[Column, ...] = tuple(
    c for c in COLUMNS
    if c.type in ("int", "double") and c.name not in PER_SESSION and c not in DIMENSIONS
)
