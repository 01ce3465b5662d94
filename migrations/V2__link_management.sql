-- Link management: API keys, owners, versions, deletes, visit limits, reuse, the change feed
-- and the audit log. Expand-only: every new column has a default or is NULL, so a binary built
-- before it keeps working against it.

-- API keys. Only a SHA-256 digest of a key is stored (a key is 190 random bits: a fast
-- digest is enough, and is what the request path can afford). `change_seq` moves on every
-- change (create, revoke), so instances read what changed since the last they saw.
CREATE SEQUENCE api_keys_change_seq;
CREATE TABLE api_keys (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scope      TEXT NOT NULL CHECK (scope IN ('links', 'admin')),
    digest     BYTEA NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ NULL,
    change_seq BIGINT NOT NULL DEFAULT nextval('api_keys_change_seq')
);
CREATE INDEX api_keys_by_change_seq ON api_keys (change_seq);

-- When each key was last used, written by the service in batches (the service's role may only
-- read api_keys).
CREATE TABLE api_key_usage (
    key_id       BIGINT PRIMARY KEY REFERENCES api_keys (id),
    last_used_at TIMESTAMPTZ NOT NULL
);

-- Owners, versions (a link's ETag), deletes (a row kept as a tombstone: its code is never
-- issued again), visit limits, and the digest a `reuse` create looks an existing link up by.
ALTER TABLE links
    ADD COLUMN owner_key_id BIGINT NULL REFERENCES api_keys (id),
    ADD COLUMN version      BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN deleted_at   TIMESTAMPTZ NULL,
    ADD COLUMN max_visits   BIGINT NULL CHECK (max_visits >= 1),
    ADD COLUMN visits_left  BIGINT NULL CHECK (visits_left >= 0),
    ADD COLUMN reuse_digest BYTEA NULL;
CREATE INDEX links_by_owner ON links (owner_key_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX links_live ON links (id DESC) WHERE deleted_at IS NULL;
CREATE INDEX links_reuse ON links (reuse_digest)
    WHERE reuse_digest IS NOT NULL AND deleted_at IS NULL;

-- Every change of a link (edit, delete, disable, enable), in commit order as far as a sequence
-- can tell: an instance whose subscription to changes dropped reads what it missed here.
CREATE TABLE link_changes (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id    BIGINT NOT NULL,
    code       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX link_changes_changed_at ON link_changes (changed_at);

-- Who changed what, and when: edits, deletes, revocations, takedowns.
CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- `key:<id>` for an API key, `cli` for an operator's command.
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    -- A link's code, or `key:<id>`.
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
