// Reads a Parquet file with DuckDB and prints its column types and rows as
// JSON: {"types": {"col": "VARCHAR", ...}, "rows": [{...}, ...]}.
// Usage: node check.mjs FILE.parquet
import { DuckDBInstance } from '@duckdb/node-api';

const file = process.argv[2];
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const describe = await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file.replaceAll("'", "''")}')`);
const types = {};
for (const row of describe.getRowObjectsJS()) {
  types[row.column_name] = row.column_type;
}
const rows = await conn.runAndReadAll(
  `SELECT * REPLACE (strftime(checked_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%g') AS checked_at) FROM read_parquet('${file.replaceAll("'", "''")}') ORDER BY row_number`);
console.log(JSON.stringify({ types, rows: rows.getRowObjectsJson() }));
