ALTER TABLE result_rows ADD COLUMN check_name TEXT NOT NULL DEFAULT 'quotient_familial';
UPDATE result_rows r SET check_name = b.check_name FROM batches b WHERE b.id = r.batch_id;
ALTER TABLE result_rows ALTER COLUMN check_name DROP DEFAULT;
ALTER TABLE result_rows DROP CONSTRAINT result_rows_pkey;
ALTER TABLE result_rows ADD PRIMARY KEY (batch_id, row_number, check_name)
