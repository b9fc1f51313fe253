// SIGHUP on a real `pgcmek serve` process: the config file is read again and new
// sessions use it (a column added to the map is encrypted from then on), open
// sessions survive and keep the map they started with; an invalid file, or a
// KEK that cannot be loaded, is rejected with the reason in the log and the
// proxy keeps serving with the config it had. Needs a build (`npm test` builds).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/cluster.js';
import { retarget } from '../helpers/proxy.js';
import { upstreamYaml } from './helpers.js';
import { abFixture, spawnServe, type AbFixture, type ServeProcess } from './serve-process.js';

let fx: AbFixture;
let port: number;
let serve: ServeProcess;
/** Sessions opened by the tests, closed at the end. */
const clients: pg.Client[] = [];

function writeConfig(extra: { encrypted: string; level?: string; listenPort?: number; kekPath?: string; raw?: string }): void {
  const yaml = [
    `listen: { host: 127.0.0.1, port: ${extra.listenPort ?? port} }`,
    upstreamYaml(),
    'shutdown_grace_seconds: 2',
    `kek: { backend: local, local: { path: ${extra.kekPath ?? fx.kek} } }`,
    `log: { level: ${extra.level ?? 'info'} }`,
    `encrypted:\n${extra.encrypted}`,
    extra.raw ?? '',
  ].join('\n');
  writeFileSync(fx.file, yaml + '\n', { mode: 0o600 });
}

const logs = () => serve.logs();
const hup = () => serve.hup();

async function session(): Promise<pg.Client> {
  const c = new pg.Client(retarget(fx.db.url, '127.0.0.1', port));
  await c.connect();
  clients.push(c);
  return c;
}

beforeAll(async () => {
  fx = await abFixture('ops_reload');
  port = await freePort();
  writeConfig({ encrypted: '  public.a: [v]' });
  serve = await spawnServe(fx.file);
});

afterAll(async () => {
  await fx?.close(clients, serve);
});

describe('SIGHUP', () => {
  let s1: pg.Client;

  it('before: only a.v is encrypted', async () => {
    s1 = await session();
    await s1.query(`INSERT INTO a VALUES (1, 'a-secret-1')`);
    await s1.query(`INSERT INTO b VALUES (1, 'b-plain-1')`);
    expect(await fx.stored('a', 1)).toMatch(/^cmek:v1:/);
    expect(await fx.stored('b', 1)).toBe('b-plain-1');
  });

  it('a column added to the map is encrypted in new sessions; the open session survives', async () => {
    writeConfig({ encrypted: '  public.a: [v]\n  public.b: [v]' });
    const line = await hup();
    expect(line.msg).toMatch(/^config reloaded/);
    expect(line).toMatchObject({ generation: 2, encryptedTables: 2 });

    const s2 = await session();
    await s2.query('INSERT INTO b VALUES (2, $1)', ['b-secret-2']);
    expect(await fx.stored('b', 2)).toMatch(/^cmek:v1:/);
    expect((await s2.query('SELECT v FROM b WHERE id = 2')).rows[0].v).toBe('b-secret-2');
    // Legacy plaintext still reads through.
    expect((await s2.query('SELECT v FROM b WHERE id = 1')).rows[0].v).toBe('b-plain-1');

    // The session opened before the reload is still there, and keeps the map it started with.
    expect((await s1.query('SELECT v FROM a WHERE id = 1')).rows[0].v).toBe('a-secret-1');
    await s1.query(`INSERT INTO b VALUES (3, 'b-old-session-3')`);
    expect(await fx.stored('b', 3)).toBe('b-old-session-3');
  });

  it('an invalid config is rejected with the reason; the proxy keeps serving with the current one', async () => {
    writeConfig({ encrypted: '  public.a: [v]\n  public.b: [v]', raw: 'workers: 0' });
    const line = await hup();
    expect(line.msg).toBe('config reload rejected: the current config stays');
    expect(line.reason).toMatch(/pgcmek\.yaml:\d+: workers: expected an integer from 1 to 1024, got 0/);

    const s3 = await session();
    await s3.query(`INSERT INTO b VALUES (4, 'b-secret-4')`);
    expect(await fx.stored('b', 4)).toMatch(/^cmek:v1:/);
    expect((await s1.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('a KEK that cannot be loaded is rejected too', async () => {
    writeConfig({ encrypted: '  public.a: [v]', kekPath: join(fx.dir, 'missing.key') });
    const line = await hup();
    expect(line.msg).toBe('config reload rejected: the current config stays');
    expect(line.reason).toMatch(/KekConfigError: local KEK file .*missing\.key does not exist/);
    const s4 = await session();
    await s4.query(`INSERT INTO b VALUES (5, 'b-secret-5')`);
    expect(await fx.stored('b', 5)).toMatch(/^cmek:v1:/);
  });

  it('the log level applies at once; keys that need a restart are named and left as they are', async () => {
    const other = await freePort();
    writeConfig({ encrypted: '  public.a: [v]\n  public.b: [v]', level: 'debug', listenPort: other });
    const line = await hup();
    expect(line.msg).toMatch(/^config reloaded/);
    const warn = logs().find((l) => l.msg.startsWith('config reloaded, except'));
    expect(warn).toMatchObject({ keys: ['listen'] });
    const s5 = await session(); // still on the old port
    await s5.query('SELECT 1');
    await expect.poll(() => logs().some((l) => l.msg === 'session started' && l.level === 20)).toBe(true);
  });

  it('SIGTERM after all that still exits 0', async () => {
    for (const c of clients.splice(0)) await c.end();
    // 'close', not 'exit': the last log lines may still be in the pipe when the process exits.
    const exited = new Promise<number | null>((r) => serve.child.once('close', (code) => r(code)));
    serve.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs().at(-1)?.msg, JSON.stringify(logs().slice(-10).map((l) => [l.msg, l.session, l.time]))).toBe('pgcmek stopped');
  });
});
