CREATE TABLE IF NOT EXISTS budget_slots (
    scope          TEXT NOT NULL,
    slot           BIGINT NOT NULL,
    used           INTEGER NOT NULL,
    PRIMARY KEY (scope, slot)
)
