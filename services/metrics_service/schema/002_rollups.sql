-- Historical layers (CONTRACT §4): per-minute rollups of raw beacons and per-hour rollups
-- of those, per customer and combination of dimension values. Sums, counts, minima and
-- maxima are exact; distinct sessions are HyperLogLog sketches (log2m 14: standard error
-- 0.8 %, inside the contract's 2 %) and quantiles t-digests, all mergeable into coarser
-- buckets. Columns follow edgestats_core.beacon_columns (DIMENSIONS, MEASURES), which the
-- roll-up and its tests read by name and position. Monthly partitions (pg_partman), 13 months.

-- one row per (customer, minute, dimension values)
CREATE TABLE beacons_minute (
    customer_id         text NOT NULL,
    "time"              timestamptz NOT NULL,  -- bucket start
    channel_id                     text,
    stream_id                      text,
    masked_stream_uri              text,
    stream_state                   text,
    bitrate                        text,
    representation_id              text,
    source                         text,
    p2p_compatible                 boolean,
    player_state                   text,
    video_resolution_height        integer,
    response_cdn                   text,
    content_steering_pathway       text,
    connection_type                text,
    os_name                        text,
    browser_name                   text,
    player_name                    text,
    app_name                       text,
    connection_status              text,
    nat_type                       text,
    asn                            text,
    as_name                        text,
    country                        text,
    beacons                        bigint NOT NULL,
    sum_video_resolution_width             double precision,
    count_video_resolution_width             bigint,
    min_video_resolution_width             double precision,
    max_video_resolution_width             double precision,
    sum_viewport_width                     double precision,
    count_viewport_width                     bigint,
    min_viewport_width                     double precision,
    max_viewport_width                     double precision,
    sum_viewport_height                    double precision,
    count_viewport_height                    bigint,
    min_viewport_height                    double precision,
    max_viewport_height                    double precision,
    sum_cdn_downlink_throughput            double precision,
    count_cdn_downlink_throughput            bigint,
    min_cdn_downlink_throughput            double precision,
    max_cdn_downlink_throughput            double precision,
    sum_p2p_downlink_throughput            double precision,
    count_p2p_downlink_throughput            bigint,
    min_p2p_downlink_throughput            double precision,
    max_p2p_downlink_throughput            double precision,
    sum_total_downlink_throughput          double precision,
    count_total_downlink_throughput          bigint,
    min_total_downlink_throughput          double precision,
    max_total_downlink_throughput          double precision,
    sum_viewing_time                       double precision,
    count_viewing_time                       bigint,
    min_viewing_time                       double precision,
    max_viewing_time                       double precision,
    sum_starting_time                      double precision,
    count_starting_time                      bigint,
    min_starting_time                      double precision,
    max_starting_time                      double precision,
    sum_buffer_health                      double precision,
    count_buffer_health                      bigint,
    min_buffer_health                      double precision,
    max_buffer_health                      double precision,
    sum_downlink_speed                     double precision,
    count_downlink_speed                     bigint,
    min_downlink_speed                     double precision,
    max_downlink_speed                     double precision,
    sum_cdn_response_time                  double precision,
    count_cdn_response_time                  bigint,
    min_cdn_response_time                  double precision,
    max_cdn_response_time                  double precision,
    sum_p2p_response_time                  double precision,
    count_p2p_response_time                  bigint,
    min_p2p_response_time                  double precision,
    max_p2p_response_time                  double precision,
    sum_dropped_frames                     double precision,
    count_dropped_frames                     bigint,
    min_dropped_frames                     double precision,
    max_dropped_frames                     double precision,
    sum_playing_time                       double precision,
    count_playing_time                       bigint,
    min_playing_time                       double precision,
    max_playing_time                       double precision,
    sum_buffering_time                     double precision,
    count_buffering_time                     bigint,
    min_buffering_time                     double precision,
    max_buffering_time                     double precision,
    sum_aggregate_buffer_filling_rate      double precision,
    count_aggregate_buffer_filling_rate      bigint,
    min_aggregate_buffer_filling_rate      double precision,
    max_aggregate_buffer_filling_rate      double precision,
    sum_uplink_capacity                    double precision,
    count_uplink_capacity                    bigint,
    min_uplink_capacity                    double precision,
    max_uplink_capacity                    double precision,
    sessions                       hll NOT NULL,       -- distinct SessionId (log2m 14)
    viewport_sessions              hll,                -- sessions with a playing/buffering beacon of known resolution
    optimal_sessions               hll,                -- those with an optimal-viewport beacon (CONTRACT §5)
    join_time                      tdigest,            -- per session: max StartingTime of its playing beacons
    downlink_speed                 tdigest             -- DownlinkSpeed values
) PARTITION BY RANGE ("time");
CREATE INDEX beacons_minute_customer_time ON beacons_minute (customer_id, "time");

-- one row per (customer, hour, dimension values), rolled up from beacons_minute: same columns
CREATE TABLE beacons_hour (LIKE beacons_minute INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE ("time");
CREATE INDEX beacons_hour_customer_time ON beacons_hour (customer_id, "time");

-- When each hour was last rolled up, to re-roll hours whose raw data changed since (late data).
-- System state, not tenant data: one row per hour for all customers.
CREATE TABLE rollup_runs (
    hour       timestamptz PRIMARY KEY,
    rolled_at  timestamptz NOT NULL,
    raw_beacons bigint NOT NULL
);

-- finds beacons ingested since a given instant (late data) without scanning every row
CREATE INDEX beacons_ingested_at ON beacons USING brin (ingested_at);

SELECT partman.create_parent(
    p_parent_table := 'public.beacons_minute', p_control := 'time', p_type := 'native',
    p_interval := 'monthly', p_premake := 2,
    p_start_partition := to_char(date_trunc('month', now() - interval '13 months'), 'YYYY-MM-DD')
);
SELECT partman.create_parent(
    p_parent_table := 'public.beacons_hour', p_control := 'time', p_type := 'native',
    p_interval := 'monthly', p_premake := 2,
    p_start_partition := to_char(date_trunc('month', now() - interval '13 months'), 'YYYY-MM-DD')
);
UPDATE partman.part_config
   SET retention = '13 months', retention_keep_table = false, infinite_time_partitions = true
 WHERE parent_table IN ('public.beacons_minute', 'public.beacons_hour');

-- How far the late-data scan has read beacons.ingested_at (one row).
CREATE TABLE rollup_watermark (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    scanned_to  timestamptz NOT NULL
);
INSERT INTO rollup_watermark (scanned_to) VALUES (now());
