// config.yaml is written for demo/schema.sql: every column it encrypts exists,
// with a type that can hold an envelope.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let db: TestDb;
beforeAll(async () => {
  db = await createTestDatabase('demo');
});
afterAll(async () => {
  await db?.drop();
});

describe('demo/schema.sql', () => {
  it('applies cleanly, twice', async () => {
    const sql = readFileSync(`${root}/demo/schema.sql`, 'utf8');
    await db.client.query(sql);
    await db.client.query(sql);
  });

  it('has every column config.yaml encrypts, as text (jsonb for json_paths)', async () => {
    const config = parseConfig(readFileSync(`${root}/config.yaml`, 'utf8'), 'config.yaml', {}, { baseDir: root });
    expect(config.encrypted.length).toBeGreaterThanOrEqual(5);
    for (const t of config.encrypted) {
      for (const c of t.columns) {
        const r = await db.client.query<{ data_type: string }>(
          'SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3',
          [t.schema, t.table, c.column],
        );
        expect(r.rows, `${t.schema}.${t.table}.${c.column}`).toHaveLength(1);
        expect(r.rows[0].data_type).toBe(c.jsonPaths ? 'jsonb' : 'text');
      }
    }
  });
});
