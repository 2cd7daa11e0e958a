-- The audit trail's identity index, kept in sorted runs behind the calls
-- (pipeline/ledger/identities.go says why). Calls get an id that only grows
-- (AUTOINCREMENT: never reused, even once every call was purged, and kept
-- by VACUUM), call_identities is the index (the first 16 hex digits of the
-- identity hash, 64 bits, then the call id), call_identities_upto the
-- highest call id it holds.
CREATE TABLE calls_v12 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            DATETIME NOT NULL,
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
INSERT INTO calls_v12 (at, tenant, batch_id, row_number, rows, check_name, route,
        http_status, error_code, request_id, latency_ms, attempt, identity_hmac)
    SELECT at, tenant, batch_id, row_number, rows, check_name, route,
        http_status, error_code, request_id, latency_ms, attempt, identity_hmac
    FROM calls ORDER BY rowid;
DROP TABLE calls;
ALTER TABLE calls_v12 RENAME TO calls;
CREATE INDEX calls_tenant_at ON calls (tenant, at);
CREATE TABLE call_identities (
    identity_prefix TEXT NOT NULL,
    call_id         INTEGER NOT NULL,
    PRIMARY KEY (identity_prefix, call_id)
) WITHOUT ROWID;
INSERT INTO call_identities (identity_prefix, call_id)
    SELECT substr(identity_hmac, 1, 16), id FROM calls ORDER BY 1, 2;
CREATE TABLE call_identities_upto (upto INTEGER NOT NULL);
INSERT INTO call_identities_upto (upto) SELECT COALESCE(MAX(id), 0) FROM calls
