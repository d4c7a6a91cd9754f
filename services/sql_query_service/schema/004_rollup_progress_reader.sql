-- How far the current hour is rolled into the minute layer (metrics_service 005): the
-- historical datasources read those minutes from the rollups, like the v1 and legacy paths.
GRANT SELECT ON rollup_progress, rollup_late_minutes TO edgestats_reader;
