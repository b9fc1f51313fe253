// `workers: 2` on a real `pgcmek serve` process: sessions spread over both
// workers, and each worker runs the whole encryption layer; /metrics (served by
// the primary) adds up the workers' series; SIGHUP reaches every worker, a
// rejected file reaches none, and a worker that dies comes back with the config
// last reloaded. Needs a build (`npm test` builds).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/cluster.js';
import { workerOfPid } from '../../src/proxy/cancel.js';
import { retarget } from '../helpers/proxy.js';
import { httpGet, sample, upstreamYaml } from './helpers.js';
import { abFixture, spawnServe, type AbFixture, type ServeProcess } from './serve-process.js';

let fx: AbFixture;
let port: number;
let metricsPort: number;
let serve: ServeProcess;
const clients: pg.Client[] = [];
let nextId = 1;

function writeConfig(encrypted: string, raw = ''): void {
  const yaml = [
    `listen: { host: 127.0.0.1, port: ${port} }`,
    upstreamYaml(),
    'workers: 2',
    'shutdown_grace_seconds: 2',
    `metrics: { host: 127.0.0.1, port: ${metricsPort} }`,
    `kek: { backend: local, local: { path: ${fx.kek} } }`,
    'log: { level: info }',
    `encrypted:\n${encrypted}`,
    raw,
  ].join('\n');
  writeFileSync(fx.file, yaml + '\n', { mode: 0o600 });
}

const logs = () => serve.logs();

async function session(): Promise<{ c: pg.Client; worker: number }> {
  const c = new pg.Client(retarget(fx.db.url, '127.0.0.1', port));
  c.on('error', () => {}); // a session on the worker that is killed below
  await c.connect();
  clients.push(c);
  return { c, worker: workerOfPid((c as unknown as { processID: number }).processID) };
}

/** A session on each worker (the primary hands connections out in turn; a restarted worker may still be starting). */
async function onEachWorker(): Promise<Map<number, pg.Client>> {
  const by = new Map<number, pg.Client>();
  const deadline = Date.now() + 15_000;
  while (by.size < 2 && Date.now() < deadline) {
    const s = await session();
    if (!by.has(s.worker)) by.set(s.worker, s.c);
    else await close(s.c);
  }
  expect([...by.keys()].sort(), serve.out()).toEqual([1, 2]);
  return by;
}

async function close(c: pg.Client): Promise<void> {
  clients.splice(clients.indexOf(c), 1);
  await c.end();
}

async function scrape(): Promise<string> {
  const r = await httpGet({ host: '127.0.0.1', port: metricsPort }, '/metrics');
  expect(r.status).toBe(200);
  return r.body;
}

/** Writes a secret to `table` through each worker; checks it is stored encrypted and reads back. */
async function writeThroughEach(table: 'a' | 'b'): Promise<void> {
  for (const [, c] of await onEachWorker()) {
    const id = nextId++;
    await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [id, `${table}-secret-${id}`]);
    expect(await fx.stored(table, id)).toMatch(/^cmek:v1:/);
    expect((await c.query(`SELECT v FROM ${table} WHERE id = $1`, [id])).rows[0].v).toBe(`${table}-secret-${id}`);
    await close(c);
  }
}

beforeAll(async () => {
  fx = await abFixture('ops_workers');
  port = await freePort();
  metricsPort = await freePort();
  writeConfig('  public.a: [v]');
  serve = await spawnServe(fx.file);
});

afterAll(async () => {
  await fx?.close(clients, serve);
});

describe('workers: 2', () => {
  it('each worker encrypts and decrypts the configured columns', async () => {
    await writeThroughEach('a');
    const s = await session();
    await s.c.query(`INSERT INTO b VALUES (100, 'b-plain')`);
    expect(await fx.stored('b', 100)).toBe('b-plain');
  });

  it('/metrics adds up the workers: values, sessions, one build line', async () => {
    const held = await onEachWorker();
    for (const [, c] of held) {
      await c.query(`INSERT INTO a VALUES ($1, 'counted')`, [nextId++]);
      // 1 client message in 16 is timed from a random start: 16 more make a sample certain.
      for (let i = 0; i < 16; i++) await c.query('SELECT 1');
    }
    const text = await scrape();
    // Two values written by writeThroughEach, two here; one decrypted per worker.
    expect(sample(text, 'pgcmek_values_encrypted_total', { column: 'public.a.v' })).toBe(4);
    expect(sample(text, 'pgcmek_values_decrypted_total', { column: 'public.a.v' })).toBe(2);
    // Sessions closed just before may still be closing in their worker.
    await expect.poll(async () => sample(await scrape(), 'pgcmek_sessions_open')).toBe(clients.length);
    expect(sample(text, 'pgcmek_queries_total', { protocol: 'extended' })).toBeGreaterThanOrEqual(6);
    expect(sample(text, 'pgcmek_queries_total', { protocol: 'simple' })).toBeGreaterThanOrEqual(32);
    expect(text.match(/^pgcmek_build_info\{/gm)).toHaveLength(1);
    expect(sample(text, 'pgcmek_build_info')).toBe(1);
    expect(sample(text, 'pgcmek_config_generation')).toBe(1);
    expect(sample(text, 'pgcmek_worker_restarts_total')).toBe(0);
    expect(sample(text, 'pgcmek_frame_processing_seconds_count', { direction: 'client' })).toBeGreaterThan(0);
  });

  it('SIGHUP: every worker encrypts a column added to the map', async () => {
    writeConfig('  public.a: [v]\n  public.b: [v]');
    const line = await serve.hup();
    expect(line.msg).toMatch(/^config reloaded:/);
    expect(line).toMatchObject({ generation: 2, encryptedTables: 2 });
    await writeThroughEach('b');
    const text = await scrape();
    expect(sample(text, 'pgcmek_config_generation')).toBe(2);
    expect(sample(text, 'pgcmek_config_reloads_total', { result: 'ok' })).toBe(1);
  });

  it('a rejected file reaches no worker', async () => {
    writeConfig('  public.a: [v]', 'workers: 0');
    const line = await serve.hup();
    expect(line.msg).toBe('config reload rejected: the current config stays');
    // b, dropped from the rejected file, is still encrypted by both workers.
    await writeThroughEach('b');
  });

  it('a worker that dies comes back with the config last reloaded', async () => {
    const pids = readFileSync(`/proc/${serve.child.pid}/task/${serve.child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(pids).toHaveLength(2);
    process.kill(pids[0]!, 'SIGKILL');
    await expect.poll(() => logs().some((l) => l.msg === 'worker died; starting a new one'), { timeout: 10_000 }).toBe(true);
    await expect
      .poll(() => readFileSync(`/proc/${serve.child.pid}/task/${serve.child.pid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p && Number(p) !== pids[0]).length, { timeout: 15_000 })
      .toBe(2);
    await writeThroughEach('b');
    expect(sample(await scrape(), 'pgcmek_worker_restarts_total')).toBe(1);
  });

  it('SIGTERM stops the primary and its workers, even one still starting', async () => {
    for (const c of clients.splice(0)) await c.end();
    const pids = readFileSync(`/proc/${serve.child.pid}/task/${serve.child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const died = logs().filter((l) => l.msg === 'worker died; starting a new one').length;
    process.kill(pids[0]!, 'SIGKILL');
    // The primary forks a replacement at once; it is still loading when the SIGTERM comes.
    await expect.poll(() => logs().filter((l) => l.msg === 'worker died; starting a new one').length, { timeout: 10_000 }).toBe(died + 1);
    const exited = new Promise<number | null>((r) => serve.child.once('close', (code) => r(code)));
    const t0 = Date.now();
    serve.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Grace is 2 s; a starting worker that missed the close message used to be killed 10 s after it.
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(logs().filter((l) => l.msg === 'worker restart failed')).toEqual([]);
  });
});
