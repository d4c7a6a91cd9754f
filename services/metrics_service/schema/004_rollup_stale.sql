-- Rolled hours that received beacons after their roll-up (late data). Ingestion marks
-- them in the same transaction as the beacons; queries read a marked hour from raw beacons
-- (like an hour not rolled up yet) until the hourly DAG re-rolls it, which clears the mark.
-- So the rollups are never behind the raw data (CONTRACT §4). System state, no tenant data.
CREATE TABLE rollup_stale (
    hour      timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);
