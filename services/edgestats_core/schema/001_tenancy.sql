-- Tenants and their API keys (CONTRACT §2). Keys are stored only as SHA-256
-- hashes: they are 256-bit random tokens, so a fast hash is enough.
CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    region      text NOT NULL CHECK (region IN ('americas', 'emea', 'apac')),
    tier        text NOT NULL CHECK (tier IN ('lite', 'advanced')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE resellers (
    reseller_id text PRIMARY KEY,
    tier        text NOT NULL CHECK (tier IN ('lite', 'advanced')),
    region      text CHECK (region IN ('americas', 'emea', 'apac')),
    customers   text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    owner_id   text NOT NULL,           -- customer, reseller or role holder: the tenant key
    key_id     text NOT NULL,           -- public prefix shown by `keys list`
    key_hash   bytea NOT NULL UNIQUE,
    kind       text NOT NULL CHECK (kind IN ('customer', 'reseller', 'usage-ingest')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (owner_id, key_id)
);
