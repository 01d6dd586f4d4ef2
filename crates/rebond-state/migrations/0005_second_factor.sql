CREATE TABLE IF NOT EXISTS second_factors (
    username TEXT PRIMARY KEY,
    sealed_secret TEXT NOT NULL,
    enrolled BIGINT NOT NULL,
    last_step BIGINT,
    created_at BIGINT NOT NULL
);
