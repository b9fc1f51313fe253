// The fakes themselves, checked with raw requests against the shapes the Vault
// Transit API docs and the AWS KMS API reference document, so the backend tests
// stand on a faithful server and not on one that agrees with our client.
import { DescribeKeyCommand, KMSClient, RotateKeyOnDemandCommand } from '@aws-sdk/client-kms';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeKms } from './fake-kms.js';
import { FakeVault } from './fake-vault.js';

async function call(url: string, method: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), json: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

describe('fake Vault follows the Transit API docs', () => {
  let v: FakeVault;
  let h: Record<string, string>;
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  beforeEach(async () => {
    v = await new FakeVault().start();
    v.createKey('k');
    h = { 'X-Vault-Token': v.rootToken };
  });
  afterEach(() => v.stop());

  it('encrypt / decrypt / rewrap / datakey / rotate / read key', async () => {
    const enc = await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { plaintext: b64('the quick brown fox') }, h);
    expect(enc.status).toBe(200);
    expect(enc.type).toBe('application/json');
    expect(enc.json.data.ciphertext).toMatch(/^vault:v1:[A-Za-z0-9+/]+=*$/);
    expect(enc.json.data.key_version).toBe(1);
    const dec = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { ciphertext: enc.json.data.ciphertext }, h);
    expect(dec.json.data).toEqual({ plaintext: b64('the quick brown fox') });

    const rot = await call(`${v.url}/v1/transit/keys/k/rotate`, 'POST', {}, h);
    expect(rot.json.data.latest_version).toBe(2);
    const rw = await call(`${v.url}/v1/transit/rewrap/k`, 'POST', { ciphertext: enc.json.data.ciphertext }, h);
    expect(rw.json.data.ciphertext).toMatch(/^vault:v2:/);

    const dkp = await call(`${v.url}/v1/transit/datakey/plaintext/k`, 'POST', { bits: 256 }, h);
    expect(Buffer.from(dkp.json.data.plaintext, 'base64').length).toBe(32);
    expect(dkp.json.data.ciphertext).toMatch(/^vault:v2:/);
    const dkw = await call(`${v.url}/v1/transit/datakey/wrapped/k`, 'POST', {}, h);
    expect(dkw.json.data.plaintext).toBeUndefined();

    const key = await call(`${v.url}/v1/transit/keys/k`, 'GET', undefined, h);
    expect(key.json.data).toMatchObject({ name: 'k', type: 'aes256-gcm96', latest_version: 2, min_decryption_version: 1, derived: false });
    expect(Object.keys(key.json.data.keys)).toEqual(['1', '2']);
  });

  it('min_decryption_version: an older version is a 400 with Vault\'s message', async () => {
    const enc = await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { plaintext: b64('x') }, h);
    await call(`${v.url}/v1/transit/keys/k/rotate`, 'POST', {}, h);
    const cfg = await call(`${v.url}/v1/transit/keys/k/config`, 'POST', { min_decryption_version: 2 }, h);
    expect(cfg.status).toBe(200);
    const dec = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { ciphertext: enc.json.data.ciphertext }, h);
    expect(dec).toMatchObject({ status: 400, json: { errors: ['ciphertext or signature version is disallowed by policy (too old)'] } });
    const key = await call(`${v.url}/v1/transit/keys/k`, 'GET', undefined, h);
    expect(Object.keys(key.json.data.keys)).toEqual(['2']);
    const bad = await call(`${v.url}/v1/transit/keys/k/config`, 'POST', { min_decryption_version: 9 }, h);
    expect(bad.status).toBe(400);
  });

  it('batch_input: results in order with reference; a failed item makes the answer 400 with batch_results', async () => {
    const enc = await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { batch_input: [{ plaintext: b64('a'), reference: 'r1' }, { plaintext: b64('b') }] }, h);
    expect(enc.status).toBe(200);
    expect(enc.json.data.batch_results).toHaveLength(2);
    expect(enc.json.data.batch_results[0].reference).toBe('r1');
    const items = [{ ciphertext: enc.json.data.batch_results[0].ciphertext }, { ciphertext: 'vault:v1:AAAA' }];
    const dec = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { batch_input: items }, h);
    expect(dec.status).toBe(400);
    expect(dec.json.data.batch_results[0]).toEqual({ plaintext: b64('a') });
    expect(dec.json.data.batch_results[1].error).toBeTruthy();
    const partial = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { batch_input: items, partial_failure_response_code: 207 }, h);
    expect(partial.status).toBe(207);
  });

  it('errors: 403 permission denied, 503 sealed with sys/health, missing key, unknown route', async () => {
    expect(await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { plaintext: 'AA==' })).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
    const t = v.createToken({ rules: [{ path: 'transit/decrypt/k', capabilities: ['update'] }] });
    expect((await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { plaintext: 'AA==' }, { 'X-Vault-Token': t })).status).toBe(403);
    expect(await call(`${v.url}/v1/transit/keys/nope`, 'GET', undefined, h)).toMatchObject({ status: 404, json: { errors: [] } });
    expect(await call(`${v.url}/v1/transit/decrypt/nope`, 'POST', { ciphertext: 'vault:v1:AAAA' }, h)).toMatchObject({ status: 400, json: { errors: ['encryption key not found'] } });
    expect((await call(`${v.url}/v1/nomount/keys/k`, 'GET', undefined, h)).status).toBe(404);
    v.sealed = true;
    expect(await call(`${v.url}/v1/transit/keys/k`, 'GET', undefined, h)).toMatchObject({ status: 503, json: { errors: ['Vault is sealed'] } });
    expect(await call(`${v.url}/v1/sys/health`, 'GET')).toMatchObject({ status: 503, json: { sealed: true, initialized: true } });
  });

  it('token lookup-self / renew-self and capabilities-self', async () => {
    const t = v.createToken({ rules: [{ path: 'transit/*', capabilities: ['read', 'update'] }], ttl: 600 });
    const th = { 'X-Vault-Token': t };
    const look = await call(`${v.url}/v1/auth/token/lookup-self`, 'GET', undefined, th);
    expect(look.json.data).toMatchObject({ renewable: true, policies: ['default', 'pgcmek'], type: 'service' });
    expect(look.json.data.ttl).toBeGreaterThan(590);
    const ren = await call(`${v.url}/v1/auth/token/renew-self`, 'POST', { increment: '900s' }, th);
    expect(ren.json.auth).toMatchObject({ lease_duration: 900, renewable: true });
    const caps = await call(`${v.url}/v1/sys/capabilities-self`, 'POST', { paths: ['transit/decrypt/k', 'sys/mounts'] }, th);
    expect(caps.json.data['transit/decrypt/k']).toEqual(['read', 'update']);
    expect(caps.json.data['sys/mounts']).toEqual(['deny']);
    const root = await call(`${v.url}/v1/auth/token/renew-self`, 'POST', {}, h);
    expect(root).toMatchObject({ status: 400, json: { errors: ['lease is not renewable'] } });
  });

  it('namespaces: X-Vault-Namespace selects the namespace', async () => {
    v.addNamespace('ns1');
    v.enableTransit('transit', 'ns1');
    v.createKey('k', { namespace: 'ns1' });
    const e1 = await call(`${v.url}/v1/transit/encrypt/k`, 'POST', { plaintext: 'AA==' }, { ...h, 'X-Vault-Namespace': 'ns1' });
    const d0 = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { ciphertext: e1.json.data.ciphertext }, h);
    expect(d0.status).toBe(400); // a different key in the root namespace
    const d1 = await call(`${v.url}/v1/transit/decrypt/k`, 'POST', { ciphertext: e1.json.data.ciphertext }, { ...h, 'X-Vault-Namespace': 'ns1/' });
    expect(d1.json.data.plaintext).toBe('AA==');
  });
});

describe('fake KMS follows the AWS JSON 1.1 protocol', () => {
  let k: FakeKms;
  beforeEach(async () => {
    k = await new FakeKms().start();
    k.credentials.set('AKIAFAKE', 'fake-secret');
  });
  afterEach(() => k.stop());

  it('errors are HTTP 400 {"__type","message"} in application/x-amz-json-1.1; unsigned requests are refused', async () => {
    const r = await fetch(k.url, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DescribeKey' }, body: '{"KeyId":"alias/x"}' });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(await r.json()).toEqual({ __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' });
  });

  it('the real SDK: DescribeKey metadata, RotateKeyOnDemand, NotFoundException', async () => {
    const key = k.createKey({ alias: 'alias/a', description: 'd' });
    const c = new KMSClient({ region: 'us-east-1', endpoint: k.url, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'fake-secret' } });
    try {
      const d = await c.send(new DescribeKeyCommand({ KeyId: 'alias/a' }));
      expect(d.KeyMetadata).toMatchObject({ Arn: key.arn, KeyId: key.keyId, KeyState: 'Enabled', Enabled: true, KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT', AWSAccountId: '111122223333' });
      expect(d.KeyMetadata!.CreationDate).toBeInstanceOf(Date);
      await c.send(new RotateKeyOnDemandCommand({ KeyId: key.arn }));
      expect(key.materials.length).toBe(2);
      const e = await c.send(new DescribeKeyCommand({ KeyId: `arn:aws:kms:us-east-1:111122223333:alias/none` })).catch((x: Error) => x);
      expect((e as Error).name).toBe('NotFoundException');
      expect((e as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode).toBe(400);
    } finally {
      c.destroy();
    }
  });
});
