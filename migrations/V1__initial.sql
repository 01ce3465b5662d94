-- Links: the Snowflake id is the primary key; generated codes decode back to it.
-- `code` holds the generated code or the alias, so the two can never collide.
CREATE TABLE links (
    id          BIGINT PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{3,64}$'),
    target_url  TEXT NOT NULL CHECK (length(target_url) <= 2048),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NULL,
    disabled_at TIMESTAMPTZ NULL
);

-- Stored responses of POST /shorten per (client scope, Idempotency-Key), kept 24 hours.
-- Written in the same transaction as the link they describe.
CREATE TABLE idempotency_keys (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    status      SMALLINT NOT NULL,
    body        TEXT NOT NULL,
    link_id     BIGINT NULL REFERENCES links (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Click tallies per link and UTC day: grows with links x days, never with traffic.
CREATE TABLE link_clicks_daily (
    link_id       BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day           DATE NOT NULL,
    clicks        BIGINT NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    bot_clicks    BIGINT NOT NULL DEFAULT 0 CHECK (bot_clicks >= 0),
    last_click_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (link_id, day)
);

-- Stats batches already applied: a retried batch (lost COMMIT acknowledgement) is skipped.
CREATE TABLE stats_batches (
    batch_id   BIGINT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stats_batches_applied_at ON stats_batches (applied_at);

-- Snowflake worker-id leases: one live holder per worker id.
CREATE TABLE worker_leases (
    worker_id     INTEGER PRIMARY KEY CHECK (worker_id BETWEEN 0 AND 1023),
    holder        TEXT NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    high_water_ms BIGINT NOT NULL DEFAULT 0
);
