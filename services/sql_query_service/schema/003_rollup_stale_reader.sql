-- Which rolled hours are stale (late data, metrics_service 004): the historical
-- datasources read those from raw beacons, like the v1 and legacy paths.
GRANT SELECT ON rollup_stale TO edgestats_reader;
