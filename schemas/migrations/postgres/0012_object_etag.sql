-- The ETag of the object version a batch verifies, recorded with it: the
-- split, the exports and the refreshes read that exact content (object_version
-- is the version id in a versioned bucket, made up by "run --force", or the
-- ETag itself). '' for batches recorded before: their object_version is used.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS object_etag TEXT NOT NULL DEFAULT '';
