-- The SQL endpoint's historical datasources read the rollups (issue #5): the reader role
-- may SELECT the rollup tables and their dimensionless totals, under the same row-level
-- security as the beacons, and the roll-up state (which hours are rolled up: system state,
-- no tenant data, no RLS). Partitions are read through their parent, whose grants and
-- policies apply.
GRANT SELECT ON beacons_minute, beacons_hour, beacons_minute_totals, beacons_hour_totals,
    rollup_runs TO edgestats_reader;

ALTER TABLE beacons_minute ENABLE ROW LEVEL SECURITY;
ALTER TABLE beacons_hour ENABLE ROW LEVEL SECURITY;
ALTER TABLE beacons_minute_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE beacons_hour_totals ENABLE ROW LEVEL SECURITY;
CREATE POLICY beacons_minute_sql_reader ON beacons_minute FOR SELECT TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));
CREATE POLICY beacons_hour_sql_reader ON beacons_hour FOR SELECT TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));
CREATE POLICY beacons_minute_totals_sql_reader ON beacons_minute_totals FOR SELECT
    TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));
CREATE POLICY beacons_hour_totals_sql_reader ON beacons_hour_totals FOR SELECT
    TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));
