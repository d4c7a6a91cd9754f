-- Raw beacons (CONTRACT §3): the realtime layer. Daily range partitions on
-- "time", managed by pg_partman (created 31 days back and 7 days ahead; raw
-- retention is 30 days). The tenant key leads every index, ready for Citus.
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
CREATE EXTENSION IF NOT EXISTS hll;
CREATE EXTENSION IF NOT EXISTS tdigest;

CREATE TABLE beacons (
    customer_id                   text NOT NULL,
    "time"                        timestamptz NOT NULL,
    session_id                    text NOT NULL,
    source                        text NOT NULL CHECK (source IN ('cdn', 'p2p')),
    channel_id                    text,
    stream_id                     text,
    masked_stream_uri             text,
    stream_state                  text,
    bitrate                       text,
    representation_id             text,
    p2p_compatible                boolean,
    player_state                  text,
    video_resolution_width        integer,
    video_resolution_height       integer,
    viewport_width                integer,
    viewport_height               integer,
    cdn_downlink_throughput       double precision,
    p2p_downlink_throughput       double precision,
    total_downlink_throughput     double precision,
    viewing_time                  double precision,
    starting_time                 double precision,
    buffer_health                 double precision,
    downlink_speed                double precision,
    node_id                       text,
    receive_from_node_id          text,
    latitude                      double precision,
    longitude                     double precision,
    response_cdn                  text,
    content_steering_pathway      text,
    cdn_response_time             double precision,
    p2p_response_time             double precision,
    dropped_frames                integer,
    playing_time                  double precision,
    buffering_time                double precision,
    aggregate_buffer_filling_rate double precision,
    connection_type               text,
    os_name                       text,
    browser_name                  text,
    player_name                   text,
    app_name                      text,
    connection_status             text,
    nat_type                      text,
    uplink_capacity               double precision,
    ip                            text,
    asn                           text,
    as_name                       text,
    country                       text,
    ingested_at                   timestamptz NOT NULL DEFAULT now(),
    -- a beacon sent twice is stored once (CONTRACT §3)
    PRIMARY KEY (customer_id, session_id, "time")
) PARTITION BY RANGE ("time");

-- customer-wide windows (/summary, /stats at customer scope)
CREATE INDEX beacons_customer_time ON beacons (customer_id, "time");
-- channel and stream scopes
CREATE INDEX beacons_customer_channel_stream_time ON beacons (customer_id, channel_id, stream_id, "time");

SELECT partman.create_parent(
    p_parent_table := 'public.beacons',
    p_control := 'time',
    p_type := 'native',
    p_interval := 'daily',
    p_premake := 7,
    p_start_partition := to_char(now() - interval '31 days', 'YYYY-MM-DD')
);
UPDATE partman.part_config
   SET retention = '31 days', retention_keep_table = false, infinite_time_partitions = true
 WHERE parent_table = 'public.beacons';
