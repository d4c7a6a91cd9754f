-- Dimensionless totals of the historical layers (CONTRACT §4): per customer, bucket and
-- source only, written by the same roll-up transaction as beacons_minute/beacons_hour. A
-- v1 query with no dimension filter or breakdown (the dashboards' headline series) reads
-- these: 30 days at `hour` are 1,440 rows per customer instead of ~600,000 (issue #4).
-- `source` stays because viewing_time splits by it.
CREATE TABLE beacons_minute_totals (
    customer_id text NOT NULL,
    "time"      timestamptz NOT NULL,  -- bucket start
    source      text,
    beacons     bigint NOT NULL,
    sum_video_resolution_width double precision,
    count_video_resolution_width bigint,
    min_video_resolution_width double precision,
    max_video_resolution_width double precision,
    sum_viewport_width double precision,
    count_viewport_width bigint,
    min_viewport_width double precision,
    max_viewport_width double precision,
    sum_viewport_height double precision,
    count_viewport_height bigint,
    min_viewport_height double precision,
    max_viewport_height double precision,
    sum_cdn_downlink_throughput double precision,
    count_cdn_downlink_throughput bigint,
    min_cdn_downlink_throughput double precision,
    max_cdn_downlink_throughput double precision,
    sum_p2p_downlink_throughput double precision,
    count_p2p_downlink_throughput bigint,
    min_p2p_downlink_throughput double precision,
    max_p2p_downlink_throughput double precision,
    sum_total_downlink_throughput double precision,
    count_total_downlink_throughput bigint,
    min_total_downlink_throughput double precision,
    max_total_downlink_throughput double precision,
    sum_viewing_time double precision,
    count_viewing_time bigint,
    min_viewing_time double precision,
    max_viewing_time double precision,
    sum_starting_time double precision,
    count_starting_time bigint,
    min_starting_time double precision,
    max_starting_time double precision,
    sum_buffer_health double precision,
    count_buffer_health bigint,
    min_buffer_health double precision,
    max_buffer_health double precision,
    sum_downlink_speed double precision,
    count_downlink_speed bigint,
    min_downlink_speed double precision,
    max_downlink_speed double precision,
    sum_cdn_response_time double precision,
    count_cdn_response_time bigint,
    min_cdn_response_time double precision,
    max_cdn_response_time double precision,
    sum_p2p_response_time double precision,
    count_p2p_response_time bigint,
    min_p2p_response_time double precision,
    max_p2p_response_time double precision,
    sum_dropped_frames double precision,
    count_dropped_frames bigint,
    min_dropped_frames double precision,
    max_dropped_frames double precision,
    sum_playing_time double precision,
    count_playing_time bigint,
    min_playing_time double precision,
    max_playing_time double precision,
    sum_buffering_time double precision,
    count_buffering_time bigint,
    min_buffering_time double precision,
    max_buffering_time double precision,
    sum_aggregate_buffer_filling_rate double precision,
    count_aggregate_buffer_filling_rate bigint,
    min_aggregate_buffer_filling_rate double precision,
    max_aggregate_buffer_filling_rate double precision,
    sum_uplink_capacity double precision,
    count_uplink_capacity bigint,
    min_uplink_capacity double precision,
    max_uplink_capacity double precision,
    sessions          hll NOT NULL,
    viewport_sessions hll,
    optimal_sessions  hll,
    join_time         tdigest,
    downlink_speed    tdigest
) PARTITION BY RANGE ("time");
CREATE INDEX beacons_minute_totals_customer_time ON beacons_minute_totals (customer_id, "time");

CREATE TABLE beacons_hour_totals (LIKE beacons_minute_totals INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE ("time");
CREATE INDEX beacons_hour_totals_customer_time ON beacons_hour_totals (customer_id, "time");

SELECT partman.create_parent(
    p_parent_table := 'public.beacons_minute_totals', p_control := 'time', p_type := 'native',
    p_interval := 'monthly', p_premake := 2,
    p_start_partition := to_char(date_trunc('month', now() - interval '13 months'), 'YYYY-MM-DD')
);
SELECT partman.create_parent(
    p_parent_table := 'public.beacons_hour_totals', p_control := 'time', p_type := 'native',
    p_interval := 'monthly', p_premake := 2,
    p_start_partition := to_char(date_trunc('month', now() - interval '13 months'), 'YYYY-MM-DD')
);
UPDATE partman.part_config
   SET retention = '13 months', retention_keep_table = false, infinite_time_partitions = true
 WHERE parent_table IN ('public.beacons_minute_totals', 'public.beacons_hour_totals');

-- hours rolled up before this migration get their totals now
INSERT INTO beacons_minute_totals
SELECT customer_id, "time", source, sum(beacons), sum(sum_video_resolution_width), sum(count_video_resolution_width), min(min_video_resolution_width), max(max_video_resolution_width), sum(sum_viewport_width), sum(count_viewport_width), min(min_viewport_width), max(max_viewport_width), sum(sum_viewport_height), sum(count_viewport_height), min(min_viewport_height), max(max_viewport_height), sum(sum_cdn_downlink_throughput), sum(count_cdn_downlink_throughput), min(min_cdn_downlink_throughput), max(max_cdn_downlink_throughput), sum(sum_p2p_downlink_throughput), sum(count_p2p_downlink_throughput), min(min_p2p_downlink_throughput), max(max_p2p_downlink_throughput), sum(sum_total_downlink_throughput), sum(count_total_downlink_throughput), min(min_total_downlink_throughput), max(max_total_downlink_throughput), sum(sum_viewing_time), sum(count_viewing_time), min(min_viewing_time), max(max_viewing_time), sum(sum_starting_time), sum(count_starting_time), min(min_starting_time), max(max_starting_time), sum(sum_buffer_health), sum(count_buffer_health), min(min_buffer_health), max(max_buffer_health), sum(sum_downlink_speed), sum(count_downlink_speed), min(min_downlink_speed), max(max_downlink_speed), sum(sum_cdn_response_time), sum(count_cdn_response_time), min(min_cdn_response_time), max(max_cdn_response_time), sum(sum_p2p_response_time), sum(count_p2p_response_time), min(min_p2p_response_time), max(max_p2p_response_time), sum(sum_dropped_frames), sum(count_dropped_frames), min(min_dropped_frames), max(max_dropped_frames), sum(sum_playing_time), sum(count_playing_time), min(min_playing_time), max(max_playing_time), sum(sum_buffering_time), sum(count_buffering_time), min(min_buffering_time), max(max_buffering_time), sum(sum_aggregate_buffer_filling_rate), sum(count_aggregate_buffer_filling_rate), min(min_aggregate_buffer_filling_rate), max(max_aggregate_buffer_filling_rate), sum(sum_uplink_capacity), sum(count_uplink_capacity), min(min_uplink_capacity), max(max_uplink_capacity),
       hll_union_agg(sessions), hll_union_agg(viewport_sessions),
       hll_union_agg(optimal_sessions), tdigest(join_time), tdigest(downlink_speed)
FROM beacons_minute
GROUP BY customer_id, 2, source;
INSERT INTO beacons_hour_totals
SELECT customer_id, "time", source, sum(beacons), sum(sum_video_resolution_width), sum(count_video_resolution_width), min(min_video_resolution_width), max(max_video_resolution_width), sum(sum_viewport_width), sum(count_viewport_width), min(min_viewport_width), max(max_viewport_width), sum(sum_viewport_height), sum(count_viewport_height), min(min_viewport_height), max(max_viewport_height), sum(sum_cdn_downlink_throughput), sum(count_cdn_downlink_throughput), min(min_cdn_downlink_throughput), max(max_cdn_downlink_throughput), sum(sum_p2p_downlink_throughput), sum(count_p2p_downlink_throughput), min(min_p2p_downlink_throughput), max(max_p2p_downlink_throughput), sum(sum_total_downlink_throughput), sum(count_total_downlink_throughput), min(min_total_downlink_throughput), max(max_total_downlink_throughput), sum(sum_viewing_time), sum(count_viewing_time), min(min_viewing_time), max(max_viewing_time), sum(sum_starting_time), sum(count_starting_time), min(min_starting_time), max(max_starting_time), sum(sum_buffer_health), sum(count_buffer_health), min(min_buffer_health), max(max_buffer_health), sum(sum_downlink_speed), sum(count_downlink_speed), min(min_downlink_speed), max(max_downlink_speed), sum(sum_cdn_response_time), sum(count_cdn_response_time), min(min_cdn_response_time), max(max_cdn_response_time), sum(sum_p2p_response_time), sum(count_p2p_response_time), min(min_p2p_response_time), max(max_p2p_response_time), sum(sum_dropped_frames), sum(count_dropped_frames), min(min_dropped_frames), max(max_dropped_frames), sum(sum_playing_time), sum(count_playing_time), min(min_playing_time), max(max_playing_time), sum(sum_buffering_time), sum(count_buffering_time), min(min_buffering_time), max(max_buffering_time), sum(sum_aggregate_buffer_filling_rate), sum(count_aggregate_buffer_filling_rate), min(min_aggregate_buffer_filling_rate), max(max_aggregate_buffer_filling_rate), sum(sum_uplink_capacity), sum(count_uplink_capacity), min(min_uplink_capacity), max(max_uplink_capacity),
       hll_union_agg(sessions), hll_union_agg(viewport_sessions),
       hll_union_agg(optimal_sessions), tdigest(join_time), tdigest(downlink_speed)
FROM beacons_hour
GROUP BY customer_id, 2, source;
