-- The whole audience in the live layer (issue #14): beacons_live_devices gains a dimension
-- 'all' whose one value ('') holds every session of its bucket and scope, whatever their
-- source or p2p_compatible, and 60-second rows beside the 5- and 30-second ones. A v1
-- audience minute point then reads one row and its stored estimate, where it used to merge
-- the sketches of beacons_live's source and p2p_compatible splits of two 30-second buckets.
-- Rows rolled before this version have neither, so the layer starts over, as in 011: the
-- live roller rebuilds its last 90 minutes from raw beacons (readers answer from raw
-- beacons until then).
TRUNCATE beacons_live, beacons_live_devices, live_late_buckets;
DELETE FROM live_progress;
COMMENT ON COLUMN beacons_live_devices.width IS 'bucket seconds: 5, 30 or 60';
COMMENT ON COLUMN beacons_live_devices.dimension IS
    'os_name, browser_name, connection_type, or all (every session, value '''')';
