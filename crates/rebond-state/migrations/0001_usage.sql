CREATE TABLE IF NOT EXISTS usage (
    session TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    workstation TEXT NOT NULL,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    active_seconds BIGINT NOT NULL DEFAULT 0,
    idle_seconds BIGINT NOT NULL DEFAULT 0,
    bytes_to_browser BIGINT NOT NULL DEFAULT 0,
    bytes_from_browser BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_started ON usage (started_at);
