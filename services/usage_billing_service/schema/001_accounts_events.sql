-- Usage users, their applications and subscriptions, and the raw usage events
-- (CONTRACT §8). Every table leads with user_id, the tenant key of this service.
CREATE TABLE usage_users (
    user_id    text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Application ids are global (their href is /v1/applications/{id}); every user has
-- exactly one default application, which receives events that name none.
CREATE TABLE usage_applications (
    user_id        text NOT NULL REFERENCES usage_users,
    application_id text NOT NULL UNIQUE,
    is_default     boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, application_id)
);
CREATE UNIQUE INDEX usage_applications_one_default
    ON usage_applications (user_id) WHERE is_default;

-- A subscription renews every `period_months`; its billing periods are
-- [starts_at + k months, starts_at + (k+1) months) until ends_at (null: open).
CREATE TABLE usage_subscriptions (
    user_id         text NOT NULL REFERENCES usage_users,
    subscription_id bigint GENERATED ALWAYS AS IDENTITY,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz,
    period_months   integer NOT NULL DEFAULT 1 CHECK (period_months > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, subscription_id)
);

-- One row per accepted event. event_id is the producer's id; an id already
-- recorded is counted once (usage_event_ids below, kept 35 days).
CREATE TABLE usage_events (
    user_id        text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    event_id       text NOT NULL,
    type           text NOT NULL CHECK (type IN ('conversion', 'storage', 'bandwidth')),
    application_id text NOT NULL,
    bytes          bigint NOT NULL CHECK (bytes >= 0),
    tag            text,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, occurred_at, event_id)
);
CREATE INDEX usage_events_ingested ON usage_events USING brin (ingested_at);

-- Ids seen in the last 35 days: the dedup key, independent of the event's timestamp.
CREATE TABLE usage_event_ids (
    event_id    text PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_event_ids_recorded ON usage_event_ids (recorded_at);
