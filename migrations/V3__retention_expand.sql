-- Retention (docs/adr/0013-retention.md). Expand-only (the `_expand` suffix): a binary built
-- before it runs against it unchanged (it never reads the totals; it only shows fewer clicks
-- for days that were pruned).

-- What the pruned days of a link's daily rows add up to: a link's totals are this row plus its
-- daily rows, so pruning a day moves its counts here and the totals never shrink.
CREATE TABLE link_clicks_total (
    link_id       BIGINT PRIMARY KEY REFERENCES links (id) ON DELETE CASCADE,
    clicks        BIGINT NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    bot_clicks    BIGINT NOT NULL DEFAULT 0 CHECK (bot_clicks >= 0),
    last_click_at TIMESTAMPTZ NOT NULL
);

-- The pruner's chunks pick the oldest rows by these, whatever the backlog.
CREATE INDEX link_clicks_daily_day ON link_clicks_daily (day);
CREATE INDEX links_expiring ON links (expires_at)
    WHERE expires_at IS NOT NULL AND deleted_at IS NULL AND disabled_at IS NULL;
