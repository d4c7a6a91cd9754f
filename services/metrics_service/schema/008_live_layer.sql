-- The live layer (issue #14): what the legacy live / 10m / 1h windows read, per customer at
-- 5-second buckets (the series resolution of live and 10m) and 30-second buckets (of 1h),
-- kept current by the metrics service's live roller (metrics_service.live_rollups) a second
-- or so behind ingestion, for the last 90 minutes. Readers take the rows up to where the
-- roller has rolled (live_progress) and the newest seconds from raw beacons.
--
-- beacons_live: per bucket, source and p2p_compatible, rows of four levels: the whole
-- customer (level 0), per channel (1), per stream and its URI (2), per rendition (channel,
-- stream, URI, bitrate, representation: 3; the columns a level does not keep are null), so
-- that a query reads the coarsest rows that keep what it filters or groups by: sums and counts of the measures the legacy
-- metrics average or sum, and the bucket's distinct sessions as a HyperLogLog (log2m 14, as
-- the rollups); the device counts are unions of the sketches of the rows matching their
-- predicate on source / p2p_compatible. System-managed, recomputable from raw beacons.
CREATE TABLE beacons_live (
    customer_id         text NOT NULL,
    level               smallint NOT NULL,     -- 0 customer, 1 channel, 2 stream, 3 rendition
    width               smallint NOT NULL,     -- bucket seconds: 5 or 30
    "time"              timestamptz NOT NULL,  -- bucket start
    channel_id          text,
    stream_id           text,
    masked_stream_uri   text,
    bitrate             text,
    representation_id   text,
    source              text,
    p2p_compatible      boolean,
    beacons             bigint NOT NULL,
    sum_cdn_downlink_throughput        double precision,
    count_cdn_downlink_throughput      bigint,
    sum_p2p_downlink_throughput        double precision,
    count_p2p_downlink_throughput      bigint,
    sum_total_downlink_throughput      double precision,
    count_total_downlink_throughput    bigint,
    sum_viewing_time                   double precision,
    count_viewing_time                 bigint,
    sum_buffering_time                 double precision,
    count_buffering_time               bigint,
    sum_playing_time                   double precision,
    count_playing_time                 bigint,
    sum_buffer_health                  double precision,
    count_buffer_health                bigint,
    sum_aggregate_buffer_filling_rate  double precision,
    count_aggregate_buffer_filling_rate bigint,
    sum_dropped_frames                 double precision,
    count_dropped_frames               bigint,
    sum_cdn_response_time              double precision,
    count_cdn_response_time            bigint,
    sum_p2p_response_time              double precision,
    count_p2p_response_time            bigint,
    sessions            hll NOT NULL
);
CREATE INDEX beacons_live_read ON beacons_live (customer_id, level, width, "time");
-- the roller replaces and expires rows by time, for every customer
CREATE INDEX beacons_live_time ON beacons_live ("time");

-- distinct sessions per device dimension value (os_name, browser_name, connection_type;
-- null stored as '', so that a bucket whose beacons have no value still has its series
-- point), at the same levels (0 customer, 1 channel, 2 stream, 3 rendition) and buckets
CREATE TABLE beacons_live_devices (
    customer_id         text NOT NULL,
    level               smallint NOT NULL,
    width               smallint NOT NULL,
    "time"              timestamptz NOT NULL,
    channel_id          text,
    stream_id           text,
    bitrate             text,
    representation_id   text,
    dimension           text NOT NULL,
    value               text NOT NULL,
    sessions            hll NOT NULL
);
CREATE INDEX beacons_live_devices_read
    ON beacons_live_devices (customer_id, dimension, level, width, "time");
CREATE INDEX beacons_live_devices_time ON beacons_live_devices ("time");

-- How far the live layer holds every beacon (one row): its rows are complete for
-- [held_from, rolled_to) but for live_late_buckets; a roll in progress has fenced up to
-- fenced_to: an ingest that commits a beacon in [held_from, fenced_to) later marks its
-- bucket late in the same transaction (as rollup_late_minutes for the minute layer).
-- Sketches stay in the row where they fit (a few KB: up to ~1,000 sessions explicit): a
-- reader merges hundreds of them per request, and each out-of-line (TOAST) value costs an
-- index lookup; only dense sketches (~10 KB) go out of line.
ALTER TABLE beacons_live ALTER COLUMN sessions SET STORAGE MAIN;
ALTER TABLE beacons_live SET (toast_tuple_target = 8160);
ALTER TABLE beacons_live_devices ALTER COLUMN sessions SET STORAGE MAIN;
ALTER TABLE beacons_live_devices SET (toast_tuple_target = 8160);

CREATE TABLE live_progress (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    held_from  timestamptz NOT NULL,
    rolled_to  timestamptz NOT NULL,
    fenced_to  timestamptz NOT NULL,
    rolled_at  timestamptz NOT NULL DEFAULT now()
);

-- 5-second buckets that got beacons after they were rolled; no key (an ingest never waits
-- for the roller deleting one); readers stop at the earliest, the next roll recomputes.
CREATE TABLE live_late_buckets (
    bucket timestamptz NOT NULL
);
CREATE INDEX live_late_buckets_bucket ON live_late_buckets (bucket);
