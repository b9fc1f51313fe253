// Who may run admin commands, what they log, and the commands' edges: rollback,
// verify failures, refusals and notices.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminError } from '../../src/admin/errors.js';
import { executeAdminCommand } from '../../src/admin/executor.js';
import { createLogger, log, setLogger } from '../../src/log.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, records, runnerFor, type Runner } from './helpers.js';

let db: TestDb;
const keyring = keyringOf(newKek());
const notices: string[] = [];
let run: Runner;
const config = configOf(
  [
    { schema: 'public', table: 'users', columns: [col('email'), col('ssn'), col('lookup', { searchable: true })] },
    { schema: 'public', table: 'missing_table', columns: [col('x')] },
    { schema: 'public', table: 'typed', columns: [col('n'), col('ok')] },
  ],
  ['postgres', 'ops'],
);

beforeAll(async () => {
  db = await createTestDatabase('adm');
  await db.client.query(`
    CREATE TABLE users (id int PRIMARY KEY, email text, ssn text, lookup text);
    INSERT INTO users SELECT g, 'user' || g || '@example.com', 'ssn-' || g, 'l' || g FROM generate_series(1, 300) g;
    CREATE TABLE typed (id int PRIMARY KEY, n int, ok text);
    INSERT INTO typed VALUES (1, 1, 'a');
  `);
  run = runnerFor(db.client, config, keyring, notices);
});

afterAll(async () => {
  await keyring.close();
  await db?.drop();
});

function captureLogs(): { lines: Record<string, unknown>[]; restore(): void } {
  const lines: Record<string, unknown>[] = [];
  const prev = log();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  setLogger(createLogger('info', sink));
  return { lines, restore: () => setLogger(prev) };
}

describe('authorisation and audit', () => {
  it('refuses roles not in admin.roles with SQLSTATE 42501, and logs the refusal', async () => {
    const logs = captureLogs();
    try {
      for (const text of ['CMEK STATUS', 'CMEK ENCRYPT EXISTING users.email', 'CMEK DECRYPT EXISTING ALL CONFIRM']) {
        const err = await run(text, { principal: { kind: 'role', name: 'app_user' } }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AdminError);
        expect((err as AdminError).sqlstate).toBe('42501');
        expect((err as AdminError).message).toMatch(/role "app_user" is not an admin role/);
      }
      expect(logs.lines.filter((l) => l.outcome === 'error' && l.sqlstate === '42501')).toHaveLength(3);
      // Nothing was touched.
      const { rows } = await db.client.query(`SELECT count(*)::int AS n FROM users WHERE email LIKE 'cmek:v1:%'`);
      expect(rows[0].n).toBe(0);
      // Another listed role may.
      await expect(run('CMEK STATUS users', { principal: { kind: 'role', name: 'ops' } })).resolves.toBeDefined();
    } finally {
      logs.restore();
    }
  });

  it('writes one audit line per command: who, what, counts, duration; never a value', async () => {
    const logs = captureLogs();
    try {
      await run('CMEK ENCRYPT EXISTING users.email BATCH 100');
      const line = logs.lines.find((l) => l.audit === 'admin');
      expect(line).toMatchObject({
        command: 'CMEK ENCRYPT EXISTING users.email BATCH 100',
        principal: 'role:postgres',
        outcome: 'ok',
        counts: { plaintext_rows: 300, encrypted: 300, skipped_concurrent: 0, failed: 0 },
      });
      expect(typeof line?.durationMs).toBe('number');
      const all = JSON.stringify(logs.lines);
      expect(all).not.toMatch(/example\.com|cmek:v1:|ssn-/);
    } finally {
      logs.restore();
    }
  });
});

describe('command edges', () => {
  it('VERIFY reports the keys of rows that fail, with the reason, never the value', async () => {
    await run('CMEK ENCRYPT EXISTING users.ssn');
    // Corrupt two envelopes: one token byte, one truncated.
    await db.client.query(`UPDATE users SET ssn = left(ssn, -4) || 'AAAA' WHERE id = 7`);
    await db.client.query(`UPDATE users SET ssn = 'cmek:v1:garbage' WHERE id = 9`);
    notices.length = 0;
    const v = records(await run('CMEK VERIFY users.ssn'))[0];
    expect(v).toMatchObject({ rows: '300', values: '300', ok: '298', failed: '2', failed_keys: 'id=7; id=9' });
    expect(notices.join('\n')).toMatch(/id=7 \(bad_mac|id=7 \(bad_token|id=7 \(bad_base64/);
    expect(notices.join('\n')).toMatch(/id=9 \(bad_format/);
    expect(notices.join('\n')).not.toMatch(/ssn-/);
  });

  it('DECRYPT EXISTING restores the plaintext (and keeps failing rows as they are)', async () => {
    const res = records(await run('CMEK DECRYPT EXISTING users.ssn, users.email CONFIRM'));
    expect(res.map((r) => [r.column, r.encrypted_rows, r.decrypted, r.failed])).toEqual([
      ['ssn', '300', '298', '2'],
      ['email', '300', '300', '0'],
    ]);
    const { rows } = await db.client.query(`SELECT id, email, ssn FROM users ORDER BY id`);
    for (const r of rows) {
      expect(r.email).toBe(`user${r.id}@example.com`);
      if (r.id !== 7 && r.id !== 9) expect(r.ssn).toBe(`ssn-${r.id}`);
    }
    // Refused without CONFIRM, whichever door the command came through.
    const err = await executeAdminCommand(
      { kind: 'decrypt', targets: 'all', dryRun: false, confirm: false },
      { db: db.client, config, keyring, principal: { kind: 'operator', name: 't' } },
    ).catch((e: unknown) => e);
    expect((err as AdminError).sqlstate).toBe('42601');
  });

  it('refuses to backfill or rotate a searchable column without its deterministic key', async () => {
    for (const text of ['CMEK ENCRYPT EXISTING users.lookup', 'CMEK ROTATE KEK users']) {
      const err = await run(text).catch((e: unknown) => e);
      expect((err as AdminError).sqlstate).toBe('55000');
      expect((err as AdminError).message).toMatch(/users\.lookup is searchable/);
    }
  });

  it('names that are not configured are errors; with ALL, unusable columns are notices', async () => {
    const cases: [string, string][] = [
      ['CMEK STATUS nope', '42P01'],
      ['CMEK STATUS users.nope', '42703'],
      ['CMEK STATUS missing_table', '42P01'],
      ['CMEK ENCRYPT EXISTING typed.n', '0A000'],
    ];
    for (const [text, state] of cases) {
      const err = await run(text).catch((e: unknown) => e);
      expect((err as AdminError).sqlstate, text).toBe(state);
    }
    notices.length = 0;
    const st = records(await run('CMEK STATUS ALL'));
    expect(st.map((r) => `${r.table}.${r.column}`)).toEqual(['public.users.email', 'public.users.ssn', 'public.users.lookup', 'public.typed.ok']);
    expect(notices.join('\n')).toMatch(/public\.missing_table does not exist in this database: skipped/);
    expect(notices.join('\n')).toMatch(/"typed"\."n": type integer cannot hold encrypted values/);
  });

  it('leaves the session settings as they were', async () => {
    await db.client.query(`SET max_parallel_workers_per_gather = 3`);
    await run('CMEK STATUS users');
    expect((await db.client.query(`SHOW max_parallel_workers_per_gather`)).rows[0].max_parallel_workers_per_gather).toBe('3');
    await db.client.query(`RESET max_parallel_workers_per_gather`);
    const before = (await db.client.query(`SELECT setting, source FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'`)).rows[0];
    await run('CMEK VERIFY users.email');
    expect((await db.client.query(`SELECT setting, source FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'`)).rows[0]).toEqual(before);
  });
});
