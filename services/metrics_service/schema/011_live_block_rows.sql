-- The live layer also keeps 5-minute rows (width 300, merged from its 30-second rows), and
-- starts on a 5-minute boundary: readers take a window's whole 5 minutes as one row per
-- group (issue #14). Rows rolled before this version have no 5-minute rows, so the layer
-- starts over: the live roller rebuilds its last 90 minutes from raw beacons (readers answer
-- from raw beacons until it holds their window again). System-managed, recomputable data.
TRUNCATE beacons_live, beacons_live_devices, live_late_buckets;
DELETE FROM live_progress;
COMMENT ON COLUMN beacons_live.width IS 'bucket seconds: 5, 30 or 300';
COMMENT ON COLUMN beacons_live_devices.width IS 'bucket seconds: 5, 30 or 300';
