CREATE TABLE IF NOT EXISTS batches (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    campaign       TEXT NOT NULL,
    check_name     TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    object_version TEXT NOT NULL,
    period         TEXT NOT NULL DEFAULT '',
    recipient      TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL,
    rows_total     BIGINT,
    lookups_total  BIGINT,
    error          TEXT NOT NULL DEFAULT '',
    manifest_key   TEXT NOT NULL DEFAULT '',
    created_at     DATETIME NOT NULL,
    split_at       DATETIME,
    completed_at   DATETIME,
    UNIQUE (bucket, object_key, object_version)
);
CREATE INDEX IF NOT EXISTS batches_tenant_campaign ON batches (tenant, campaign);
CREATE TABLE IF NOT EXISTS parts (
    batch_id       TEXT NOT NULL REFERENCES batches (id),
    part_no        INTEGER NOT NULL,
    object_key     TEXT NOT NULL,
    rows           BIGINT NOT NULL,
    size           BIGINT NOT NULL,
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (batch_id, part_no)
);
CREATE TABLE IF NOT EXISTS result_rows (
    batch_id       TEXT NOT NULL REFERENCES batches (id),
    row_number     BIGINT NOT NULL,
    status         TEXT NOT NULL,
    calls          INTEGER NOT NULL,
    part_no        INTEGER NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);
