-- The live layer's edge rows (issue #14): for each 5-minute block, a row for every prefix
-- and every suffix of its 5-second grid (width: the span's seconds, "time": its start), so
-- that a 10m or 1h summary reads one row per group for each block it starts or ends inside;
-- beacons_live_devices keeps 5- and 30-second rows only. Rows rolled before this version
-- have no edge rows, so the layer starts over, as in 011: the live roller rebuilds its last
-- 90 minutes from raw beacons (readers answer from raw beacons until then).
TRUNCATE beacons_live, beacons_live_devices, live_late_buckets;
DELETE FROM live_progress;
COMMENT ON COLUMN beacons_live.width IS
    'seconds held from "time": a bucket (5, 30 or 300) or a 5-minute block''s prefix or suffix';
COMMENT ON COLUMN beacons_live_devices.width IS 'bucket seconds: 5 or 30';
