-- The SQL endpoint's read-only role (CONTRACT §7, the second wall): the service
-- runs each customer query inside a transaction after SET LOCAL ROLE
-- edgestats_reader and SET LOCAL edgestats.customers = '<ids>'. The role can
-- read the beacons only, and only the rows of those customers (row-level
-- security), whatever SQL reaches PostgreSQL. Roles are cluster-wide, so the
-- role is created once and reused by every database of the cluster.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'edgestats_reader') THEN
        CREATE ROLE edgestats_reader NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
-- the service's own login role may switch to it (a superuser may anyway)
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT edgestats_reader TO %I', current_user);
    END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM edgestats_reader;
GRANT USAGE ON SCHEMA public TO edgestats_reader;
GRANT SELECT ON beacons TO edgestats_reader;

ALTER TABLE beacons ENABLE ROW LEVEL SECURITY;
-- The owner (the services' login role) is not subject to RLS; only the reader is.
CREATE POLICY beacons_sql_reader ON beacons FOR SELECT TO edgestats_reader
    USING (customer_id = ANY (string_to_array(current_setting('edgestats.customers', true), ',')));

-- Druid semantics the translated SQL needs (sql_query_service/druid_sql/functions.py).
CREATE SCHEMA edgestats_sql;
GRANT USAGE ON SCHEMA edgestats_sql TO edgestats_reader;

-- CAST('x' AS DOUBLE): a string that is not a number is null, never an error.
CREATE FUNCTION edgestats_sql.to_double(value text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?\s*$'
                THEN value::double precision END
$$;

-- CAST('x' AS BIGINT): truncated toward zero; null when not a number or out of range.
CREATE FUNCTION edgestats_sql.to_bigint(value text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN abs(d) < 9.2e18 THEN trunc(d)::bigint END
    FROM (SELECT edgestats_sql.to_double(value) AS d) AS parsed
$$;

-- TIME_PARSE: ISO-8601 (pattern null) or a to_timestamp pattern; null when it does not parse.
CREATE FUNCTION edgestats_sql.time_parse(value text, pattern text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF value IS NULL THEN RETURN NULL; END IF;
    IF pattern IS NULL THEN RETURN value::timestamptz; END IF;
    RETURN to_timestamp(value, pattern);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA edgestats_sql TO edgestats_reader;
