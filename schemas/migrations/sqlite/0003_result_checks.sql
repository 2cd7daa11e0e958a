CREATE TABLE result_rows_v3 (
    batch_id       TEXT NOT NULL REFERENCES batches (id),
    row_number     BIGINT NOT NULL,
    check_name     TEXT NOT NULL,
    status         TEXT NOT NULL,
    calls          INTEGER NOT NULL,
    part_no        INTEGER NOT NULL,
    PRIMARY KEY (batch_id, row_number, check_name)
);
INSERT INTO result_rows_v3 (batch_id, row_number, check_name, status, calls, part_no)
    SELECT r.batch_id, r.row_number, b.check_name, r.status, r.calls, r.part_no
    FROM result_rows r JOIN batches b ON b.id = r.batch_id;
DROP TABLE result_rows;
ALTER TABLE result_rows_v3 RENAME TO result_rows
