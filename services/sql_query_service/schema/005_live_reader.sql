-- Realtime scans of the SQL endpoint read the newest seconds from the live layer
-- (metrics_service 008) where it holds them and the scan reads only what its
-- whole-customer rows keep: the reader role may SELECT it, under the same row-level
-- security as the beacons, and its state (system state, no tenant data, no RLS).
GRANT SELECT ON beacons_live, live_progress, live_late_buckets TO edgestats_reader;
ALTER TABLE beacons_live ENABLE ROW LEVEL SECURITY;
CREATE POLICY beacons_live_sql_reader ON beacons_live FOR SELECT TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));
