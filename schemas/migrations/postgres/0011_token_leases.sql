-- One caller per API token at a time: a worker pool calls with a token only
-- while it holds the token's lease (expires_ns, unix nanoseconds).
CREATE TABLE IF NOT EXISTS token_leases (
    token_key      TEXT NOT NULL PRIMARY KEY,
    holder         TEXT NOT NULL,
    expires_ns     BIGINT NOT NULL
)
