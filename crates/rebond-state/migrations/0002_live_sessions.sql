CREATE TABLE IF NOT EXISTS live_sessions (
    username TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    node TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
