CREATE TABLE IF NOT EXISTS watch_cursors (
    bucket         TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    modified_at    DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL,
    PRIMARY KEY (bucket, prefix)
)
