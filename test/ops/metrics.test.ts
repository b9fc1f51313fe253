// The metrics pieces without a proxy: the counting codec (what counts as an
// encryption, a decryption, a failure), the interceptor wrapper (queries,
// sampling, close once) and the exposition built at scrape time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { RemoteKekError } from '../../src/crypto/kek/retry.js';
import { CountingCodec, failureReason } from '../../src/metrics/counting-codec.js';
import { InstrumentedInterceptor, SAMPLE_EVERY } from '../../src/metrics/instrument.js';
import { createMetrics } from '../../src/metrics/registry.js';
import { ProxyStats } from '../../src/metrics/stats.js';
import { FrontendCode } from '../../src/protocol/codes.js';
import type { InterceptContext, Interceptor } from '../../src/proxy/interceptor.js';
import { sample } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-metrics-'));
let keyring: Keyring;
let other: Keyring;
const policy: ColumnPolicy = { column: 'token', searchable: false, onDecryptError: 'error', encryptEmpty: false };
const tables: TablePolicy[] = [{ schema: 'public', table: 'secrets', columns: [policy] }];

beforeAll(async () => {
  const dek = { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 100, cacheTtlSeconds: 0 };
  generateKekFile(join(dir, 'a.key'));
  generateKekFile(join(dir, 'b.key'));
  keyring = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'a.key'), previous: [] }, dek });
  other = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'b.key'), previous: [] }, dek });
});

afterAll(async () => {
  await keyring.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('CountingCodec', () => {
  it('counts values encrypted and decrypted per column; pass-throughs are not counted', async () => {
    const stats = new ProxyStats();
    stats.registerColumns(tables);
    const codec = new CountingCodec(keyring, stats);
    const env = codec.encrypt(Buffer.from('s3cret'), policy, 'text', false) as Buffer;
    expect(env.toString().startsWith('cmek:v1:')).toBe(true);
    codec.encrypt(Buffer.alloc(0), policy, 'text', false); // empty stays empty
    codec.encrypt(env, policy, 'text', false); // already an envelope
    expect((codec.decrypt(env, policy, 'text', false) as Buffer).toString()).toBe('s3cret');
    codec.decrypt(Buffer.from('legacy plaintext'), policy, 'text', false);
    expect(stats.columns.get('public.secrets.token')).toEqual({ encrypted: 1, decrypted: 1 });
  });

  it('counts decryption failures by reason, and rethrows them', async () => {
    const stats = new ProxyStats();
    stats.registerColumns(tables);
    const codec = new CountingCodec(keyring, stats);
    const foreign = Buffer.from(await other.encrypt('x'));
    expect(() => codec.decrypt(foreign, policy, 'text', false)).toThrow(/unknown_kek|KEK/);
    expect(() => codec.decrypt(Buffer.from('cmek:v1:@@@|x|y'), policy, 'text', false)).toThrow();
    expect(Object.fromEntries(stats.decryptFailures)).toMatchObject({ unknown_kek: 1 });
    expect([...stats.decryptFailures.values()].reduce((a, b) => a + b)).toBe(2);
  });

  it('a failure label is a reason or an error class, never a message', () => {
    expect(failureReason(new RemoteKekError('vault', 'network', 'connect ECONNREFUSED secret-ish'))).toBe('backend_unavailable');
    expect(failureReason(new TypeError('value "abc" is bad'))).toBe('TypeError');
    expect(failureReason(new Error('value "abc" is bad'))).toBe('internal');
  });

  it('an unregistered policy is counted under ?.<column>', () => {
    const stats = new ProxyStats();
    const codec = new CountingCodec(keyring, stats);
    codec.encrypt(Buffer.from('v'), { ...policy, column: 'loose' }, 'text', false);
    expect(stats.columns.get('?.loose')).toEqual({ encrypted: 1, decrypted: 0 });
  });
});

describe('InstrumentedInterceptor', () => {
  const frame = (code: number) => Buffer.from([code, 0, 0, 0, 4]);
  const ctx = {} as InterceptContext;

  it('counts Query and Execute, samples 1 frame in SAMPLE_EVERY, and closes once', async () => {
    const stats = new ProxyStats();
    const seen: string[] = [];
    let closed = 0;
    let released = 0;
    const inner: Interceptor = {
      frontendCodes: [FrontendCode.Query, FrontendCode.Execute],
      backendCodes: [0x44],
      trackState: true,
      onFrontend: () => undefined,
      onBackend: () => Promise.resolve(null),
      close: () => closed++,
    };
    const i = new InstrumentedInterceptor(inner, stats, { observe: (d) => seen.push(d) }, () => released++);
    expect(i.trackState).toBe(true);
    expect(i.frontendCodes).toBe(inner.frontendCodes);
    for (let n = 0; n < SAMPLE_EVERY * 4; n++) {
      expect(i.onFrontend!(n % 2 ? FrontendCode.Query : FrontendCode.Execute, frame(0x51), ctx)).toBeUndefined();
      expect(await i.onBackend!(0x44, frame(0x44), undefined, ctx)).toBeNull();
    }
    expect(stats.queries).toEqual({ simple: SAMPLE_EVERY * 2, extended: SAMPLE_EVERY * 2 });
    expect(seen.filter((d) => d === 'client').length + seen.filter((d) => d === 'server').length).toBe(8);
    i.close();
    i.close();
    expect([closed, released]).toEqual([1, 1]);
  });

  it('without a timer it never samples; missing hooks stay missing', () => {
    const inner: Interceptor = { frontendCodes: [], backendCodes: [], trackState: false };
    const i = new InstrumentedInterceptor(inner, new ProxyStats(), undefined, () => {});
    expect(i.onFrontend).toBeUndefined();
    expect(i.onBackend).toBeUndefined();
  });
});

describe('the exposition', () => {
  it('is read from the sources at scrape time, sums remote backends, and shows no value', async () => {
    const stats = new ProxyStats();
    stats.registerColumns(tables);
    stats.columns.get('public.secrets.token')!.encrypted = 7;
    stats.refused({ code: '0A000', reason: 'unsupported_operator', message: "LIKE 'top-secret%'" });
    stats.adminStarted('encrypt');
    stats.adminProgressFn(5, 10, 1, 5, 'public.secrets.token');
    let sessions = 3;
    const remote = { backend: 'vault' as const, calls: { datakey: 2 }, errors: {}, failures: { network: 1 }, retries: { datakey: 1 }, batchedItems: {} };
    const m = createMetrics({
      stats,
      server: () => ({ host: 'h', port: 1, close: async () => {}, sessionCount: () => sessions, traffic: () => ({ sessions: 9, bytesIn: 100, bytesOut: 200, relayed: 2 }) }),
      kek: () => ({ keyring: { ...keyring.stats(), generates: 4 }, remote: [remote, { ...remote, calls: { datakey: 3, decrypt: 1 } }] }),
      generation: () => 2,
      version: '9.9.9',
    });
    let text = await m.registry.metrics();
    expect(sample(text, 'pgcmek_sessions_open')).toBe(3);
    expect(sample(text, 'pgcmek_sessions_total')).toBe(9);
    expect(sample(text, 'pgcmek_sessions_native_relay')).toBe(2);
    expect(sample(text, 'pgcmek_values_encrypted_total', { column: 'public.secrets.token' })).toBe(7);
    expect(sample(text, 'pgcmek_refusals_total', { reason: 'unsupported_operator', sqlstate: '0A000' })).toBe(1);
    expect(sample(text, 'pgcmek_kek_remote_calls_total', { backend: 'vault', operation: 'datakey' })).toBe(5);
    expect(sample(text, 'pgcmek_kek_remote_calls_total', { backend: 'vault', operation: 'decrypt' })).toBe(1);
    expect(sample(text, 'pgcmek_kek_remote_retries_total', { backend: 'vault', operation: 'datakey' })).toBe(2);
    expect(sample(text, 'pgcmek_kek_remote_failures_total', { backend: 'vault', kind: 'network' })).toBe(2);
    expect(sample(text, 'pgcmek_dek_generated_total')).toBe(4);
    expect(sample(text, 'pgcmek_admin_commands_running', { command: 'encrypt' })).toBe(1);
    expect(sample(text, 'pgcmek_admin_rows_done', { column: 'public.secrets.token' })).toBe(5);
    expect(sample(text, 'pgcmek_config_generation')).toBe(2);
    expect(text).not.toContain('top-secret');
    // A second scrape sees the new values (nothing is cached between scrapes).
    sessions = 0;
    stats.adminEnded('encrypt', 'ok');
    text = await m.registry.metrics();
    expect(sample(text, 'pgcmek_sessions_open')).toBe(0);
    expect(sample(text, 'pgcmek_admin_commands_running', { command: 'encrypt' })).toBe(0);
    expect(sample(text, 'pgcmek_admin_commands_total', { command: 'encrypt', outcome: 'ok' })).toBe(1);
  });
});

describe('clusterMetrics (workers > 1)', () => {
  const source = (stats: ProxyStats, sessions: number, generation: number, worker?: number) =>
    createMetrics({
      stats,
      server: () => ({ host: 'h', port: 1, close: async () => {}, sessionCount: () => sessions, traffic: () => ({ sessions, bytesIn: 10, bytesOut: 20, relayed: 1 }) }),
      kek: () => ({ keyring: keyring.stats(), remote: [] }),
      generation: () => generation,
      version: '9.9.9',
      ...(worker !== undefined && { worker }),
    });

  it('adds the workers up; the build, generation and reload series are the primary’s; admin progress stays per worker', async () => {
    const { clusterMetrics } = await import('../../src/metrics/cluster.js');
    const primaryStats = new ProxyStats();
    primaryStats.reloads.set('ok', 2);
    // The primary runs no session, but its sessionCount() is the workers' sum: it must not be added again.
    const primary = source(primaryStats, 5, 3);
    const workers = [1, 2].map((w) => {
      const stats = new ProxyStats();
      stats.registerColumns(tables);
      stats.column(policy).encrypted = 10 * w;
      stats.queries.extended = w;
      stats.reloads.set('ok', 1); // each worker counts its own; the primary's count is the one shown
      stats.adminProgress.set('public.secrets.token', { done: w * 100, total: 1000 });
      return source(stats, w + 1, 3, w);
    });
    const text = await clusterMetrics(primary.registry, async () => Promise.all(workers.map((m) => m.registry.getMetricsAsJSON())));
    expect(sample(text, 'pgcmek_values_encrypted_total', { column: 'public.secrets.token' })).toBe(30);
    expect(sample(text, 'pgcmek_queries_total', { protocol: 'extended' })).toBe(3);
    expect(sample(text, 'pgcmek_sessions_open')).toBe(5);
    expect(sample(text, 'pgcmek_config_reloads_total', { result: 'ok' })).toBe(2);
    expect(sample(text, 'pgcmek_config_generation')).toBe(3);
    expect(sample(text, 'pgcmek_build_info', { version: '9.9.9' })).toBe(1);
    expect(sample(text, 'pgcmek_admin_rows_done', { column: 'public.secrets.token', worker: '1' })).toBe(100);
    expect(sample(text, 'pgcmek_admin_rows_done', { column: 'public.secrets.token', worker: '2' })).toBe(200);
    expect(sample(text, 'pgcmek_client_received_bytes_total')).toBe(20);
    expect(sample(text, 'pgcmek_sessions_native_relay')).toBe(2);
  });
});
