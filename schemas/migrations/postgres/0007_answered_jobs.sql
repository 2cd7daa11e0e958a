CREATE TABLE IF NOT EXISTS answered_jobs (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition_no   INTEGER NOT NULL,
    base_offset    BIGINT NOT NULL,
    offsets        TEXT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_no)
)
