-- Usage facts (CONTRACT §8, docs/usage-stats.md): what the Statistics resource reads for
-- complete days and hours, and the billing-period totals. Computed from usage_events by
-- usage_billing_service.facts (Airflow DAGs usage_facts_hourly / usage_facts_daily); a
-- recomputation replaces its bucket's rows. Every table leads with user_id.

-- Bytes of one type per (user, application, UTC day): storage = the largest sample of the
-- day, conversion and bandwidth = the sum.
CREATE TABLE usage_daily_facts (
    user_id        text NOT NULL,
    type           text NOT NULL CHECK (type IN ('conversion', 'storage', 'bandwidth')),
    day            date NOT NULL,
    application_id text NOT NULL,
    bytes          bigint NOT NULL,
    PRIMARY KEY (user_id, type, day, application_id)
);

-- Bandwidth bytes per (user, application, AutoGraph tag, UTC hour).
CREATE TABLE usage_tag_hour_facts (
    user_id        text NOT NULL,
    hour           timestamptz NOT NULL,
    tag            text NOT NULL,
    application_id text NOT NULL,
    bytes          bigint NOT NULL,
    PRIMARY KEY (user_id, hour, tag, application_id)
);
CREATE INDEX usage_tag_hour_facts_tag ON usage_tag_hour_facts (user_id, tag, hour);

-- Totals of each billing period of a subscription: conversion and bandwidth summed over
-- [period_start, period_end), storage = the peak of the user's daily storage in it.
CREATE TABLE usage_period_totals (
    user_id         text NOT NULL,
    subscription_id bigint NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    type            text NOT NULL CHECK (type IN ('conversion', 'storage', 'bandwidth')),
    bytes           bigint NOT NULL,
    computed_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, subscription_id, period_start, type)
);

-- Which buckets have been computed, and when: the read path serves a complete day (hour)
-- from the facts only once it is listed here, and the late-data catch-up recomputes a
-- bucket that received events after (or just before) computed_at.
CREATE TABLE usage_fact_runs (
    grain       text NOT NULL CHECK (grain IN ('day', 'tag_hour')),
    bucket      timestamptz NOT NULL,
    computed_at timestamptz NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (grain, bucket)
);

-- How far the late-data catch-up has scanned usage_events.ingested_at.
CREATE TABLE usage_fact_watermark (
    scanned_to timestamptz NOT NULL
);
INSERT INTO usage_fact_watermark VALUES (now());
