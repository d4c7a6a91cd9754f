-- The current hour in the minute layer before its hour is rolled up (issue #8): the metrics
-- service rolls each closed minute of the current (and just-closed) hour into beacons_minute
-- and beacons_minute_totals as it goes, so readers aggregate only the last minute or two
-- from raw beacons, not the whole hour. The hourly roll-up (DAG) replaces it all and
-- deletes these rows. System state, no tenant data.
CREATE TABLE rollup_progress (
    hour      timestamptz PRIMARY KEY,
    -- the minute rows of [hour, rolled_to) hold every beacon (but for rollup_late_minutes)
    rolled_to timestamptz NOT NULL,
    -- a roll up to here is under way: new beacons before it are late (rollup_late_minutes)
    fenced_to timestamptz NOT NULL,
    rolled_at timestamptz NOT NULL DEFAULT now()
);

-- Minutes of rollup_progress hours that got beacons after (or while) they were rolled:
-- written by ingestion in the beacons' transaction, so readers take [minute, …) from raw
-- beacons at once; the next minute roll recomputes from the earliest and deletes them.
CREATE TABLE rollup_late_minutes (
    minute timestamptz PRIMARY KEY
);
