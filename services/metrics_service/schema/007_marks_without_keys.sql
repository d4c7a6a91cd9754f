-- Late-data marks (rollup_stale, rollup_late_minutes) become append-only: ingestion inserts
-- them with no unique key, so an ingest never waits for a roll-up that is deleting the same
-- mark (with a key, INSERT … ON CONFLICT waits to learn whether the delete commits — a
-- re-roll of a big published hour made late-data ingests wait for minutes). A roll-up
-- deletes the marks its snapshot sees; a mark committed later stays, so the hour or minute
-- is rolled again, as before. Readers only ask whether a mark exists, or the earliest.
ALTER TABLE rollup_stale DROP CONSTRAINT rollup_stale_pkey;
CREATE INDEX rollup_stale_hour ON rollup_stale (hour);
ALTER TABLE rollup_late_minutes DROP CONSTRAINT rollup_late_minutes_pkey;
CREATE INDEX rollup_late_minutes_minute ON rollup_late_minutes (minute);
