-- active_at: the last time a worker held one of the batch's jobs (the
-- watchdog's sign of life), split_attempts: splits started, so that a file
-- that makes every split fail is refused instead of retried for ever,
-- priced_from: for a batch that re-prices another's results with a new
-- tariff grid, that batch (no call is made for it).
ALTER TABLE batches ADD COLUMN active_at TIMESTAMPTZ;
ALTER TABLE batches ADD COLUMN split_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN priced_from TEXT NOT NULL DEFAULT ''
