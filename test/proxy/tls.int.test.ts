// TLS on both hops: SSLRequest/GSSENCRequest answers, TLS termination with a
// generated certificate, the CVE-2021-3935 class (plaintext behind SSLRequest),
// and upstream TLS modes against a second cluster started with ssl=on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { connect } from 'node:net';
import { chownSync, copyFileSync, chmodSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { startCluster, type Cluster, type PgFlavour } from '../../src/dev/cluster.js';
import { encodeRequest, encodeStartup } from '../../src/protocol/frontend/startup.js';
import { StartupCode } from '../../src/protocol/codes.js';
import { decodeErrorFields } from '../../src/protocol/backend/error-response.js';
import { ensureRole, makeCerts, proxyUrl, startTestProxy, type TestCerts } from './helpers.js';

/** Opens a socket, writes `bytes` in one write, returns everything read until close. */
async function exchange(port: number, bytes: Buffer, waitMs = 2000): Promise<Buffer> {
  const s = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  s.on('data', (d) => chunks.push(d));
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(bytes);
  await new Promise<void>((r) => {
    const t = setTimeout(() => {
      s.destroy();
      r();
    }, waitMs);
    s.once('close', () => {
      clearTimeout(t);
      r();
    });
  });
  return Buffer.concat(chunks);
}

describe('proxy: client-side TLS', () => {
  let db: TestDb;
  let certs: TestCerts;
  let plain: ProxyServer;
  let secure: ProxyServer;
  beforeAll(async () => {
    db = await createTestDatabase('pxtls');
    await ensureRole(db.client, 'pgcmek_trust');
    certs = makeCerts();
    plain = await startTestProxy();
    secure = await startTestProxy({ tls: { cert: certs.cert, key: certs.key } });
  });
  afterAll(async () => {
    await plain?.close(0);
    await secure?.close(0);
    await db?.drop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it("answers SSLRequest with 'N' when no certificate is configured, then serves plaintext", async () => {
    const s = connect({ host: '127.0.0.1', port: plain.port });
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(serialize.requestSsl());
    const answer = await new Promise<Buffer>((r) => s.once('data', r));
    expect(answer.toString()).toBe('N');
    s.destroy();
    const c = new pg.Client({ connectionString: proxyUrl(plain, db.name), ssl: false });
    await c.connect();
    expect((await c.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    await c.end();
  });

  it("answers GSSENCRequest with 'N', and start-up continues on the same socket", async () => {
    const startup = encodeStartup([['user', 'pgcmek_trust'], ['database', db.name]]);
    const out = await exchange(plain.port, Buffer.concat([encodeRequest(StartupCode.GSSENCRequest), startup, serialize.end()]), 1500);
    expect(String.fromCharCode(out[0]!)).toBe('N');
    expect(String.fromCharCode(out[1]!)).toBe('R'); // AuthenticationOk
    expect(out.includes(Buffer.from('Z\0\0\0\x05I'))).toBe(true);
  });

  it('terminates TLS with the configured certificate (verified by the client)', async () => {
    const c = new pg.Client({
      connectionString: proxyUrl(secure, db.name),
      ssl: { ca: readFileSync(certs.ca), servername: 'localhost', rejectUnauthorized: true },
    });
    await c.connect();
    expect((await c.query('SELECT 2 AS x')).rows).toEqual([{ x: 2 }]);
    await c.end();
  });

  it('SCRAM through a TLS client connection (channel binding is not offered)', async () => {
    await ensureRole(db.client, 'px_tls_scram');
    await db.client.query(`GRANT CONNECT ON DATABASE ${db.name} TO px_tls_scram`);
    const c = new pg.Client({
      connectionString: proxyUrl(secure, db.name, 'px_tls_scram', 'px_tls_scram'),
      ssl: { rejectUnauthorized: false },
      enableChannelBinding: true,
    });
    await c.connect();
    expect((await c.query('SELECT current_user AS u')).rows).toEqual([{ u: 'px_tls_scram' }]);
    await c.end();
  });

  it('rejects plaintext sent behind the SSLRequest before the handshake (CVE-2021-3935 class)', async () => {
    const startup = encodeStartup([['user', 'pgcmek_trust'], ['database', db.name]]);
    const out = await exchange(secure.port, Buffer.concat([serialize.requestSsl(), startup]));
    expect(String.fromCharCode(out[0]!)).toBe('E');
    const f = decodeErrorFields(out.subarray(5, 1 + out.readInt32BE(1)));
    expect(f).toMatchObject({ severity: 'FATAL', code: '08P01' });
    expect(f.message).toMatch(/unencrypted data after SSL request/);
    // The proxy still serves everyone else.
    const c = new pg.Client({ connectionString: proxyUrl(secure, db.name), ssl: { rejectUnauthorized: false } });
    await c.connect();
    await c.end();
  });

  it('a second SSLRequest is a protocol violation', async () => {
    const out = await exchange(plain.port, Buffer.concat([serialize.requestSsl(), serialize.requestSsl()]));
    expect(out.subarray(0, 1).toString()).toBe('N');
    expect(decodeErrorFields(out.subarray(6, 2 + out.readInt32BE(2)))).toMatchObject({ code: '08P01' });
  });

  it('an unsupported protocol major version is refused with FATAL 0A000', async () => {
    const out = await exchange(plain.port, encodeStartup([['user', 'x']], 2, 0));
    expect(decodeErrorFields(out.subarray(5, 1 + out.readInt32BE(1)))).toMatchObject({ severity: 'FATAL', code: '0A000' });
  });
});

describe('proxy: upstream TLS', () => {
  let cluster: Cluster | undefined;
  let certs: TestCerts;
  let admin: pg.Client;
  const proxies: ProxyServer[] = [];
  const flavour = inject('pgFlavour');

  beforeAll(async () => {
    if (flavour !== '18' && flavour !== '15') return;
    certs = makeCerts();
    // Postgres insists its key is private to the server's OS user.
    const sslDir = join(certs.dir, 'pg');
    execFileSync('mkdir', ['-p', sslDir]);
    copyFileSync(certs.cert, join(sslDir, 'server.pem'));
    copyFileSync(certs.key, join(sslDir, 'server.key'));
    chmodSync(sslDir, 0o755);
    chmodSync(certs.dir, 0o755);
    chmodSync(join(sslDir, 'server.key'), 0o600);
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(join(sslDir, 'server.key'), uid, gid);
      chownSync(join(sslDir, 'server.pem'), uid, gid);
    }
    cluster = await startCluster({
      flavour: flavour as PgFlavour,
      settings: { ssl: 'on', ssl_cert_file: `'${join(sslDir, 'server.pem')}'`, ssl_key_file: `'${join(sslDir, 'server.key')}'` },
    });
    admin = new pg.Client(cluster.url());
    await admin.connect();
    await ensureRole(admin, 'pgcmek_trust');
  });
  afterAll(async () => {
    for (const p of proxies) await p.close(0);
    await admin?.end();
    await cluster?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  async function through(tls: 'disable' | 'prefer' | 'require' | 'verify-full', caFile?: string, user = 'postgres') {
    const p = await startTestProxy({ upstream: { host: '127.0.0.1', port: cluster!.port, tls, caFile } });
    proxies.push(p);
    const c = new pg.Client(proxyUrl(p, 'postgres', user, user === 'postgres' ? 'postgres' : user));
    await c.connect();
    try {
      const r = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      return r.rows[0].ssl as boolean;
    } finally {
      await c.end();
    }
  }

  it.skipIf(flavour !== '18' && flavour !== '15')('disable: plain; prefer and require: TLS', async () => {
    expect(await through('disable')).toBe(false);
    expect(await through('prefer')).toBe(true);
    expect(await through('require')).toBe(true);
  });

  it.skipIf(flavour !== '18' && flavour !== '15')('verify-full checks the CA and the host name', async () => {
    expect(await through('verify-full', certs.ca)).toBe(true);
    await expect(through('verify-full', certs.otherCa)).rejects.toMatchObject({ code: '08001' });
  });

  it.skipIf(flavour !== '18' && flavour !== '15')('require fails cleanly against a server without TLS', async () => {
    const u = new URL(inject('pgUrl'));
    const p = await startTestProxy({ upstream: { host: u.hostname, port: Number(u.port), tls: 'require' } });
    proxies.push(p);
    const c = new pg.Client(proxyUrl(p, 'postgres'));
    await expect(c.connect()).rejects.toMatchObject({ code: '08001', message: expect.stringMatching(/does not support SSL/) });
  });

  it.skipIf(flavour !== '18' && flavour !== '15')('SCRAM over TLS to the server: the -PLUS mechanism is hidden from the client', async () => {
    const seen: string[] = [];
    const p = await startTestProxy({ upstream: { host: '127.0.0.1', port: cluster!.port, tls: 'require' } });
    proxies.push(p);
    const s = connect({ host: '127.0.0.1', port: p.port });
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(encodeStartup([['user', 'postgres'], ['database', 'postgres']]));
    const first = await new Promise<Buffer>((r) => s.once('data', r));
    s.destroy();
    expect(first.subarray(0, 1).toString()).toBe('R');
    expect(first.readInt32BE(5)).toBe(10);
    for (const m of first.subarray(9).toString().split('\0')) if (m) seen.push(m);
    expect(seen).toEqual(['SCRAM-SHA-256']);
    // Authentication completes with plain SCRAM.
    const c = new pg.Client({ connectionString: proxyUrl(p, 'postgres') });
    await c.connect();
    await c.end();
    // The documented limit: a client that says "I support channel binding but the
    // server does not" (gs2 flag 'y'; libpq sends it whenever its own connection is
    // TLS) is refused by a server reached over TLS, and the client is told so.
    const y = new pg.Client({ connectionString: proxyUrl(p, 'postgres'), enableChannelBinding: true });
    await expect(y.connect()).rejects.toMatchObject({ code: '28000', message: expect.stringMatching(/channel binding/) });
  });
});
