import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';

describe('test harness', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDatabase('harness');
  });
  afterAll(async () => db.drop());

  it('runs a real Postgres of the project flavour', async () => {
    const { rows } = await db.client.query('SHOW server_version_num');
    const flavour = inject('pgFlavour');
    if (flavour === '18') expect(Number(rows[0].server_version_num)).toBeGreaterThanOrEqual(180000);
    if (flavour === '15') expect(Math.floor(Number(rows[0].server_version_num) / 10000)).toBe(15);
  });
});
