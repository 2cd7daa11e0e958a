CREATE TABLE IF NOT EXISTS watch_cursors (
    bucket         TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    modified_at    TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (bucket, prefix)
)
