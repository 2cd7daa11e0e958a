CREATE TABLE IF NOT EXISTS calls (
    at            TIMESTAMPTZ NOT NULL,
    tenant        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    row_number    BIGINT NOT NULL,
    rows          INTEGER NOT NULL,
    check_name    TEXT NOT NULL,
    route         TEXT NOT NULL,
    http_status   INTEGER NOT NULL,
    error_code    TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    latency_ms    BIGINT NOT NULL,
    attempt       INTEGER NOT NULL,
    identity_hmac TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_identity ON calls (identity_hmac, at)
