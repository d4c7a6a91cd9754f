-- Minute rows staged by the helper connections of a whole hour recomputed from raw beacons
-- (issue #14): PostgreSQL 15 runs no INSERT ... SELECT in parallel, so a backfill reads its
-- minutes on several connections at once, each writing here under the roll's run number;
-- the roll's own transaction copies them into beacons_minute and beacons_minute_totals
-- (readers never see a half-written hour) and they are deleted. Scratch rows: unlogged (not
-- replicated, emptied by a crash), read by nobody else.
CREATE UNLOGGED TABLE beacons_minute_staged (LIKE beacons_minute, run bigint NOT NULL);
CREATE UNLOGGED TABLE beacons_minute_totals_staged (
    LIKE beacons_minute_totals, run bigint NOT NULL
);
