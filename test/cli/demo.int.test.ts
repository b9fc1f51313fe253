// `pgcmek demo` (npm start) end to end: its own embedded Postgres 18, the demo
// schema, a KEK, and the proxy in front. Runs once (it does not use the suite's server).
import { EventEmitter } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { run } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-demo-'));
chmodSync(dir, 0o755); // as root, Postgres runs as the postgres user and must reach DIR/pg
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function demoOnce(): Promise<{ tables: string[]; kek: Buffer }> {
  const signals = new EventEmitter();
  let out = '';
  let onReady: (port: number) => void;
  const ready = new Promise<number>((r) => (onReady = r));
  const done = run(['demo', '--dir', dir, '--port', '0'], {
    signals,
    onStdout: (t) => {
      out += t;
      const line = out.split('\n').find((l) => l.includes('"pgcmek demo ready"'));
      if (line) onReady((JSON.parse(line) as { port: number }).port);
    },
  });
  const port = await Promise.race([ready, done.then((r) => Promise.reject(new Error(`demo exited: ${r.stderr}`)))]);
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: 'postgres', database: 'demo' });
  await c.connect();
  const r = await c.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
  await c.end();
  signals.emit('SIGINT');
  const result = await done;
  expect(result.code).toBe(0);
  expect(result.stderr).toContain('pgcmek demo is running');
  return { tables: r.rows.map((x) => x.table_name), kek: readFileSync(join(dir, 'kek.key')) };
}

describe.runIf(inject('pgFlavour') !== '15')('pgcmek demo', () => {
  it('serves the demo schema through the proxy, and a second run reuses its state', async () => {
    const first = await demoOnce();
    expect(first.tables).toEqual(['api_token', 'integrations_integrationconnection', 'user_profile', 'webhook', 'workspace']);
    const second = await demoOnce();
    expect(second.tables).toEqual(first.tables);
    expect(second.kek.equals(first.kek)).toBe(true);
  });
});
