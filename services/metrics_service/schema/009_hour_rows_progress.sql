-- The minute roller merges each minute it rolls into the hour's hour rows as it goes, so
-- that publishing an hour it completed needs no merge (issue #14, metrics_service.hour_rows):
-- the hour rows of an hour are exactly the merge of its minute rows [hour, hour_rows_to).
-- NULL: unknown (rows before this migration): the next roll-up rebuilds them from the
-- minute rows. Hour rows are only read once the hour is published (rollup_runs).
ALTER TABLE rollup_progress ADD COLUMN hour_rows_to timestamptz;

-- An hour group's dimension values as one key, NULL equal to NULL (a row value's text form
-- quotes every value: distinct values never share a text; md5 makes it 16 bytes). Declared
-- immutable for the index below: record_out is only stable because some types' output
-- depends on settings, and text, boolean and integer do not.
CREATE FUNCTION rollup_dims_key(
    channel_id text, stream_id text, masked_stream_uri text, stream_state text, bitrate text,
    representation_id text, source text, p2p_compatible boolean, player_state text,
    video_resolution_height integer, response_cdn text, content_steering_pathway text,
    connection_type text, os_name text, browser_name text, player_name text, app_name text,
    connection_status text, nat_type text, asn text, as_name text, country text
) RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN md5(ROW(channel_id, stream_id, masked_stream_uri, stream_state, bitrate,
               representation_id, source, p2p_compatible, player_state, video_resolution_height,
               response_cdn, content_steering_pathway, connection_type, os_name, browser_name,
               player_name, app_name, connection_status, nat_type, asn, as_name, country)::text
          )::uuid;

-- the hour rows of one hour group: the roller replaces those a rolled minute touches (and a
-- roll-up deletes an hour's rows by "time" without reading the month's partition)
CREATE INDEX beacons_hour_time_dims ON beacons_hour ("time", customer_id, rollup_dims_key(
    channel_id, stream_id, masked_stream_uri, stream_state, bitrate, representation_id, source,
    p2p_compatible, player_state, video_resolution_height, response_cdn,
    content_steering_pathway, connection_type, os_name, browser_name, player_name, app_name,
    connection_status, nat_type, asn, as_name, country));
