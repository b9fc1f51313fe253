// A config reload retires a generation: once its last session ends, its
// encryption layer is closed with its keyring, so the searchable column keys it
// loaded are zeroed (and forgotten), while the new generation loads its own and
// sessions on either keep finding their rows until then.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyRuntime } from '../../src/cli/reload.js';
import type { Config } from '../../src/config/types.js';
import type { EncryptionLayer } from '../../src/encryption/layer.js';
import { createLogger } from '../../src/log.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';
import type { DeterministicKey } from '../../src/searchable/deterministic.js';
import type { GroupKey } from '../../src/searchable/group-key.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { retarget, testProxyConfig } from '../helpers/proxy.js';
import { newKekFile } from './proxy-setup.js';

const kek = newKekFile();
let db: TestDb;
let rt: ProxyRuntime;
let server: ProxyServer;
const clients: pg.Client[] = [];

function config(): Config {
  return testProxyConfig({
    encrypted: [table('api_token', [column('token_hash', { searchable: true })])],
    kek: { backend: 'local', local: { path: kek.path, previous: [] }, dek: { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 100, cacheTtlSeconds: 0 } },
  });
}

async function connect(): Promise<pg.Client> {
  const c = new pg.Client(retarget(db.url, server.host, server.port));
  await c.connect();
  clients.push(c);
  return c;
}

/** The column keys a layer loaded for the test database, and every buffer holding key material. */
function keyMaterial(layer: EncryptionLayer): (Buffer | Int32Array)[] {
  const keys = layer.searchable.keysFor(db.name);
  if (!keys) throw new Error('no searchable keys loaded');
  const groups = (keys as unknown as { groups: Map<string, GroupKey> }).groups;
  expect(groups.size).toBe(1);
  const out: (Buffer | Int32Array)[] = [];
  for (const g of groups.values()) {
    const k: DeterministicKey = g.key;
    // The IV key's and the Fernet signing key's HMACs: key copies and pad states (src/crypto/hmac-sha256.ts).
    type Mac = { key: Buffer; inner: Int32Array; outer: Int32Array };
    const inner = k as unknown as { ivKey: Buffer; ivMac: Mac; fernet: { hmac: Mac } };
    out.push(k.fernet.signingKey, k.fernet.encryptionKey, inner.ivKey);
    for (const m of [inner.ivMac, inner.fernet.hmac]) out.push(m.key, m.inner, m.outer);
  }
  return out;
}

const zero = (b: Buffer | Int32Array) => b.every((x) => x === 0);
const lookup = async (c: pg.Client, h: string) => (await c.query('SELECT id FROM api_token WHERE token_hash = $1', [h])).rows.map((r) => r.id);

beforeAll(async () => {
  db = await createTestDatabase('srchzero');
  await db.client.query('CREATE TABLE api_token (id serial PRIMARY KEY, token_hash text UNIQUE)');
  rt = await ProxyRuntime.open(config(), createLogger('silent'));
  server = await startProxy(rt.config, { logger: createLogger('silent'), keyring: rt.keyring, interceptor: rt.interceptor });
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await server?.close(0);
  await rt?.close();
  await db?.drop();
  rmSync(dirname(kek.path), { recursive: true, force: true });
});

describe('config reload and searchable keys', () => {
  it('the retired generation zeroes its column keys when its last session ends', async () => {
    const old = await connect();
    const h = `sha256:${randomBytes(32).toString('hex')}`;
    await old.query('INSERT INTO api_token (token_hash) VALUES ($1)', [h]);
    expect(await lookup(old, h)).toEqual([1]);
    const oldLayer = rt.layer;
    const material = keyMaterial(oldLayer);
    expect(material.some(zero)).toBe(false);

    await rt.reload(config());
    expect(rt.layer).not.toBe(oldLayer);
    // Its session is still open: the old keys stay, and its lookups keep working.
    expect(await lookup(old, h)).toEqual([1]);
    expect(material.some(zero)).toBe(false);
    // A new session belongs to the new generation, which loads its own copy of the same column key.
    const fresh = await connect();
    expect(await lookup(fresh, h)).toEqual([1]);
    const next = keyMaterial(rt.layer);
    expect((next[0] as Buffer).equals(material[0] as Buffer)).toBe(true); // the signing key half
    expect(next[0]).not.toBe(material[0]);

    await old.end();
    await expect.poll(() => material.every(zero), { timeout: 5_000 }).toBe(true);
    expect(oldLayer.searchable.keysFor(db.name)).toBeUndefined();
    // The current generation is untouched.
    expect(next.some(zero)).toBe(false);
    expect(await lookup(fresh, h)).toEqual([1]);
  });

  it('closing the runtime zeroes the current generation too', async () => {
    const material = keyMaterial(rt.layer);
    for (const c of clients) await c.end().catch(() => {});
    clients.length = 0;
    await server.close(0);
    await rt.close();
    expect(material.every(zero)).toBe(true);
  });
});
