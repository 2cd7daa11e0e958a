// Runs SQL blocks with DuckDB, in order and in one connection, from folder
// DIR (so that relative paths in the queries read DIR's files), and prints
// the rows of each block's last statement as JSON: [[{...}, ...], ...].
// Usage: node query.mjs DIR < blocks.json   (blocks.json: ["SELECT …", …])
import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';

const blocks = JSON.parse(readFileSync(0, 'utf8'));
process.chdir(process.argv[2]);
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const out = [];
for (const sql of blocks) {
  const result = await conn.runAndReadAll(sql);
  out.push(result.getRowObjectsJson());
}
console.log(JSON.stringify(out));
