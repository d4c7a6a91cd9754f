-- Usage users as principals (CONTRACT §2, §8): API keys of kind usage-user,
-- OAuth 2.0 clients (client credentials) and the access tokens they obtain.
-- Per-key rate-limit overrides (CONTRACT §9: "configurable per tier and per key").
-- Secrets and tokens are stored only as SHA-256 hashes, like keys.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_kind_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_kind_check
    CHECK (kind IN ('customer', 'reseller', 'usage-ingest', 'usage-user'));
ALTER TABLE api_keys
    ADD COLUMN rate_limit double precision CHECK (rate_limit > 0),
    ADD COLUMN rate_burst double precision CHECK (rate_burst >= 1);

CREATE TABLE oauth_clients (
    user_id     text NOT NULL,
    client_id   text NOT NULL UNIQUE,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE oauth_access_tokens (
    user_id    text NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    client_id  text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, token_hash)
);
-- expired tokens are deleted by the daily maintenance
CREATE INDEX oauth_access_tokens_expiry ON oauth_access_tokens (expires_at);
