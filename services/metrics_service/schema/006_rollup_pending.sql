-- Every minute rolled, whether or not Airflow runs (issue #14): every hour that receives
-- beacons (the current one, history loaded late, late data of a published hour) is marked
-- here by ingestion, in the beacons' transaction; the metrics service's roller publishes
-- each marked hour once it is closed, and its roll-up deletes the mark first (a beacon
-- committed later marks the hour again). System state, no tenant data.
CREATE TABLE rollup_pending (
    hour      timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- rollup_progress now outlives the hour's publication: (hour, hour + 1 h) says every minute
-- row of the hour is complete but for rollup_late_minutes, so a late beacon of a published
-- hour costs a re-roll of its minutes, not of the hour. Published hours rolled before this
-- migration have no row: their next roll-up reads raw beacons once.

-- hours the minute roller holds but nobody published yet: the roller publishes them
INSERT INTO rollup_pending (hour)
SELECT hour FROM rollup_progress p WHERE NOT EXISTS (SELECT FROM rollup_runs r WHERE r.hour = p.hour)
ON CONFLICT DO NOTHING;
