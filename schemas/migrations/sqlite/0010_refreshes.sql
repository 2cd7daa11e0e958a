CREATE TABLE IF NOT EXISTS refreshes (
    tenant         TEXT NOT NULL,
    campaign       TEXT NOT NULL,
    source_batch   TEXT NOT NULL REFERENCES batches (id),
    object_key     TEXT NOT NULL,
    period         TEXT NOT NULL DEFAULT '',
    batch_id       TEXT NOT NULL DEFAULT '',
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (tenant, campaign)
)
