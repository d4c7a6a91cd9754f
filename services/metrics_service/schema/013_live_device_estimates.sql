-- beacons_live_devices rows carry their sketch's estimate, computed once by the live roller:
-- a device series point that is one row (a whole 30-second bucket of one value) reads it
-- instead of computing a cardinality per request (~45 µs a point: 720 points for an hour of
-- 30-second points of 6 OS values). The same number hll_cardinality(sessions) gives.
ALTER TABLE beacons_live_devices ADD COLUMN sessions_estimate double precision;
UPDATE beacons_live_devices SET sessions_estimate = hll_cardinality(sessions);
ALTER TABLE beacons_live_devices ALTER COLUMN sessions_estimate SET NOT NULL;
