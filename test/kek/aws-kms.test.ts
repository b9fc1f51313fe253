// The aws_kms backend end to end: the real AWS SDK (SigV4, JSON 1.1) against the
// in-process KMS. Wrap/unwrap, EncryptionContext, rotation + ReEncrypt, errors
// (each naming its setting), throttling retries.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseEnvelope } from '../../src/crypto/envelope.js';
import { CMEKDecryptionError, KekConfigError } from '../../src/crypto/errors.js';
import { AwsKmsBackend, createAwsKmsBackend, ENCRYPTION_CONTEXT, type AwsKmsBackendOptions } from '../../src/crypto/kek/aws-kms.js';
import { RemoteKekError } from '../../src/crypto/kek/retry.js';
import { BackendTag } from '../../src/crypto/kek/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { FakeKms, type FakeKmsKey } from './fake-kms.js';
import { captureLog, errorText, FAST_RETRY, kmsConfig, NO_REUSE, rejection } from './helpers.js';

const AKID = 'AKIAFAKEPGCMEK000001';
const SECRET = 'fake/secret/for+tests/only0000000000000';

let kms: FakeKms;
let key: FakeKmsKey;
let logs: string[];
const opened: AwsKmsBackend[] = [];

function useCredentials(akid = AKID, secret = SECRET): void {
  vi.stubEnv('AWS_ACCESS_KEY_ID', akid);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', secret);
}

async function make(k: { keyId?: string; region?: string; endpoint?: string } = {}, o: Partial<AwsKmsBackendOptions> & { backend?: 'aws_kms' | 'local' } = {}): Promise<AwsKmsBackend> {
  const cap = captureLog();
  logs = cap.lines;
  const cfg = kmsConfig({ keyId: k.keyId ?? 'alias/pgcmek', region: k.region ?? 'us-east-1', endpoint: k.endpoint ?? kms.url }, { backend: o.backend ?? 'aws_kms' });
  const b = await createAwsKmsBackend(cfg, { retry: FAST_RETRY, log: cap.logger, ...o });
  opened.push(b);
  return b;
}

async function ready(k: Parameters<typeof make>[0] = {}): Promise<AwsKmsBackend> {
  const b = await make(k);
  await b.init();
  return b;
}

async function initError(k: Parameters<typeof make>[0] = {}, o: Parameters<typeof make>[1] = {}): Promise<Error> {
  const b = await make(k, o);
  const e = await rejection(b.init());
  expect(e).toBeInstanceOf(KekConfigError);
  expect(errorText(e)).not.toContain(SECRET);
  return e;
}

beforeEach(async () => {
  kms = await new FakeKms().start();
  kms.credentials.set(AKID, SECRET);
  key = kms.createKey({ alias: 'alias/pgcmek' });
  useCredentials();
  vi.stubEnv('AWS_PROFILE', '');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/credentials');
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/config');
  vi.stubEnv('AWS_EC2_METADATA_DISABLED', 'true');
  logs = [];
});

afterEach(async () => {
  for (const l of logs) expect(l).not.toContain(SECRET);
  await Promise.all(opened.splice(0).map((b) => b.close()));
  await kms.stop();
  vi.unstubAllEnvs();
});

describe('aws_kms backend: wrap and unwrap', () => {
  it('init resolves the alias to the key ARN and proves GenerateDataKey + Decrypt', async () => {
    const b = await ready();
    expect(b.primaryKekId().toString()).toBe(key.arn);
    expect(kms.requests.map((r) => r.op)).toEqual(['DescribeKey', 'GenerateDataKey', 'Decrypt']);
  });

  it.each(['id', 'arn'])('accepts the key by %s', async (form) => {
    const b = await ready({ keyId: form === 'id' ? key.keyId : key.arn });
    expect(b.primaryKekId().toString()).toBe(key.arn);
  });

  it('GenerateDataKey gives a 32-byte DEK; Decrypt gives it back; EncryptionContext purpose=cmek:v1 on every call', async () => {
    const b = await ready();
    const { dek, wrapped } = await b.generateDek();
    expect(dek.length).toBe(32);
    expect(wrapped.tag).toBe(BackendTag.aws_kms);
    expect(wrapped.kekId.toString()).toBe(key.arn);
    expect(wrapped.nonce.length).toBe(0);
    expect((await b.unwrap(wrapped)).equals(dek)).toBe(true);
    const data = kms.requests.filter((r) => r.op !== 'DescribeKey');
    expect(data.length).toBeGreaterThan(0);
    for (const r of data) expect(r.encryptionContext).toEqual({ purpose: 'cmek:v1' });
    expect(ENCRYPTION_CONTEXT).toEqual({ purpose: 'cmek:v1' });
  });

  it('wrap uses Encrypt', async () => {
    const b = await ready();
    const dek = Buffer.alloc(32, 9);
    const w = await b.wrap(dek);
    expect(w.kekId.toString()).toBe(key.arn);
    expect((await b.unwrap(w)).equals(dek)).toBe(true);
    expect(kms.count('Encrypt')).toBe(1);
  });

  it('a blob made with another EncryptionContext does not unwrap (InvalidCiphertextException -> unwrap_failed)', async () => {
    const b = await ready();
    const sdk = new KMSClient({ region: 'us-east-1', endpoint: kms.url });
    const other = await sdk.send(new EncryptCommand({ KeyId: key.arn, Plaintext: Buffer.alloc(32, 1), EncryptionContext: { purpose: 'something-else' } }));
    sdk.destroy();
    const e = await rejection(b.unwrap({ tag: BackendTag.aws_kms, kekId: Buffer.from(key.arn), nonce: Buffer.alloc(0), wrapped: Buffer.from(other.CiphertextBlob!) }));
    expect((e as CMEKDecryptionError).reason).toBe('unwrap_failed');
    expect(e.message).toContain('EncryptionContext');
  });

  it('an altered blob, or a blob under a KEK id of another key, is unwrap_failed', async () => {
    const b = await ready();
    const g = await b.generateDek();
    const altered = { ...g.wrapped, wrapped: Buffer.from(g.wrapped.wrapped) };
    altered.wrapped[altered.wrapped.length - 3] ^= 1;
    expect(((await rejection(b.unwrap(altered))) as CMEKDecryptionError).reason).toBe('unwrap_failed');
    const key2 = kms.createKey();
    const swapped = { ...g.wrapped, kekId: Buffer.from(key2.arn) };
    const e = await rejection(b.unwrap(swapped));
    expect((e as CMEKDecryptionError).reason).toBe('unwrap_failed');
    expect(e.message).toContain('IncorrectKeyException');
  });

  it('refuses, without a call, a value naming a key of another account', async () => {
    const b = await ready();
    const k = new Keyring({ primary: b, readable: [b], dek: NO_REUSE });
    const v = await k.encrypt('x');
    const w = parseEnvelope(v).wrapped;
    expect(b.hasKek(w.kekId)).toBe(true);
    const foreign = Buffer.from(key.arn.replace('111122223333', '999999999999'));
    expect(b.hasKek(foreign)).toBe(false);
    expect(b.hasKek(Buffer.from(key.arn.replace('us-east-1', 'eu-west-1')))).toBe(false);
    expect(b.hasKek(Buffer.from('alias/pgcmek'))).toBe(false);
  });

  it('encrypts and decrypts through the keyring', async () => {
    const b = await ready();
    const k = new Keyring({ primary: b, readable: [b], dek: NO_REUSE });
    const values = await Promise.all(['α', 'β', 'γ'].map((s) => k.encrypt(s)));
    const fresh = new Keyring({ primary: b, readable: [b], dek: NO_REUSE });
    expect(await Promise.all(values.map((v) => fresh.decrypt(v)))).toEqual(['α', 'β', 'γ']);
    expect(fresh.describe(values[0]!)).toEqual({ backend: 'aws_kms', kekId: key.arn, primary: true });
  });
});

describe('aws_kms backend: rotation', () => {
  it('KMS key rotation keeps the ARN: old blobs decrypt; rewrap (ReEncrypt) moves them to the new material', async () => {
    const b = await ready();
    const g = await b.generateDek();
    expect(g.wrapped.wrapped.readUInt32BE(37)).toBe(0); // the fake's blob: material version after the key id
    kms.requests.length = 0;
    key.materials.push(Buffer.alloc(32, 2)); // RotateKeyOnDemand
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    const nw = await b.rewrap(g.wrapped);
    expect(kms.requests.map((r) => r.op)).toEqual(['Decrypt', 'ReEncrypt']);
    expect(nw.kekId.toString()).toBe(key.arn);
    expect(nw.wrapped.readUInt32BE(37)).toBe(1);
    expect((await b.unwrap(nw)).equals(g.dek)).toBe(true);
  });

  it('moving to another key: old values stay readable, keyring.rewrap uses ReEncrypt from the old key to the new', async () => {
    const b1 = await ready();
    const k1 = new Keyring({ primary: b1, readable: [b1], dek: NO_REUSE });
    const old = await k1.encrypt('moved');
    const key2 = kms.createKey({ alias: 'alias/pgcmek-2024' });
    const b2 = await ready({ keyId: 'alias/pgcmek-2024' });
    const k2 = new Keyring({ primary: b2, readable: [b2], dek: NO_REUSE });
    expect(await k2.decrypt(old)).toBe('moved');
    expect(k2.needsRotation(old)).toBe(true);
    kms.requests.length = 0;
    const moved = await k2.rewrap(old);
    expect(kms.requests.map((r) => r.op)).toEqual(['ReEncrypt']);
    expect(k2.describe(moved)).toEqual({ backend: 'aws_kms', kekId: key2.arn, primary: true });
    expect(await new Keyring({ primary: b2, readable: [b2], dek: NO_REUSE }).decrypt(moved)).toBe('moved');
  });

  it('an alias moved to another key: the new ARN becomes the primary KEK id', async () => {
    const b = await ready();
    const key2 = kms.createKey();
    kms.setAlias('alias/pgcmek', key2);
    const g = await b.generateDek();
    expect(g.wrapped.kekId.toString()).toBe(key2.arn);
    expect(b.primaryKekId().toString()).toBe(key2.arn);
  });
});

describe('aws_kms backend: init() refuses a misconfiguration, naming the setting', () => {
  it('no key id names VIGILO_CMEK_AWS_KMS_KEY_ID', async () => {
    const e = await rejection(createAwsKmsBackend(kmsConfig({ region: 'us-east-1' })));
    expect(e).toBeInstanceOf(KekConfigError);
    expect(e.message).toContain('VIGILO_CMEK_AWS_KMS_KEY_ID');
  });

  it('a bad endpoint names kek.aws_kms.endpoint', async () => {
    const e = await rejection(createAwsKmsBackend(kmsConfig({ keyId: 'alias/x', endpoint: 'vpce-123' })));
    expect(e.message).toContain('kek.aws_kms.endpoint');
  });

  it('an unknown key names VIGILO_CMEK_AWS_KMS_KEY_ID and the region', async () => {
    const e = await initError({ keyId: 'alias/nope' });
    expect(e.message).toContain('NotFoundException');
    expect(e.message).toContain('VIGILO_CMEK_AWS_KMS_KEY_ID');
    expect(e.message).toContain('kek.aws_kms.region');
  });

  it('a disabled key', async () => {
    key.state = 'Disabled';
    const e = await initError();
    expect(e.message).toContain('Disabled');
    expect(e.message).toContain('enable');
    expect(e.message).toContain('VIGILO_CMEK_AWS_KMS_KEY_ID');
  });

  it('a key pending deletion', async () => {
    key.state = 'PendingDeletion';
    const e = await initError();
    expect(e.message).toContain('PendingDeletion');
    expect(e.message).toContain('cancel');
  });

  it('an asymmetric key', async () => {
    kms.createKey({ alias: 'alias/signing', keyUsage: 'SIGN_VERIFY', keySpec: 'ECC_NIST_P256' });
    const e = await initError({ keyId: 'alias/signing' });
    expect(e.message).toContain('SYMMETRIC_DEFAULT');
  });

  it('AccessDenied on DescribeKey names the IAM action', async () => {
    kms.deny('DescribeKey');
    const e = await initError();
    expect(e.message).toContain('AccessDeniedException');
    expect(e.message).toContain('grant kms:DescribeKey');
    expect(e.message).toContain('VIGILO_CMEK_AWS_KMS_KEY_ID');
  });

  it('AccessDenied on Decrypt is caught at init for the primary', async () => {
    kms.deny('Decrypt');
    const e = await initError();
    expect(e.message).toContain('kms:Decrypt');
  });

  it('a readable-only KMS backend does not need GenerateDataKey', async () => {
    kms.deny('GenerateDataKey');
    const b = await make({}, { backend: 'local' });
    await b.init();
    expect(kms.requests.map((r) => r.op)).toEqual(['DescribeKey']);
  });

  it('the wrong secret key: AWS rejects the signature; names the credential chain', async () => {
    useCredentials(AKID, 'wrong-secret');
    const e = await initError();
    expect(e.message).toContain('InvalidSignatureException');
    expect(e.message).toContain('AWS_ACCESS_KEY_ID');
    expect(errorText(e)).not.toContain('wrong-secret');
  });

  it('an unknown access key', async () => {
    useCredentials('AKIAUNKNOWN000000000', SECRET);
    const e = await initError();
    expect(e.message).toContain('UnrecognizedClientException');
  });

  it('credentials signed for another region than the endpoint serves names the region setting', async () => {
    const e = await initError({ region: 'eu-west-1' });
    expect(e.message).toContain('kek.aws_kms.region');
  });

  it('no credentials anywhere in the chain', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', '');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', '');
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    const e = await initError();
    expect(e.message).toContain('no usable AWS credentials');
    expect(e.message).toContain('AWS_ACCESS_KEY_ID');
  });

  it('no region names kek.aws_kms.region', async () => {
    vi.stubEnv('AWS_REGION', '');
    vi.stubEnv('AWS_DEFAULT_REGION', '');
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    const b = await createAwsKmsBackend(kmsConfig({ keyId: 'alias/pgcmek', endpoint: kms.url }), { retry: FAST_RETRY, log: captureLog().logger });
    opened.push(b);
    const e = await rejection(b.init());
    expect(e).toBeInstanceOf(KekConfigError);
    expect(e.message).toContain('kek.aws_kms.region');
  });

  it('an endpoint that does not answer names the endpoint and region settings', async () => {
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const e = await initError({ endpoint: `http://127.0.0.1:${port}` });
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain('kek.aws_kms.endpoint');
    expect(e.message).toContain('after 4 attempts');
  });
});

describe('aws_kms backend: timeouts', () => {
  it('a KMS that does not answer in time is a network failure naming the endpoint', async () => {
    kms.latencyMs = 1000;
    const b = await make({}, { timeoutMs: 100, retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 1 } });
    const started = Date.now();
    const e = await rejection(b.init());
    expect(Date.now() - started).toBeLessThan(900);
    expect(e.message).toContain('ETIMEDOUT');
    expect(e.message).toContain('kek.aws_kms.endpoint');
  });
});

describe('aws_kms backend: failures after startup', () => {
  it('ThrottlingException is retried with backoff and counted', async () => {
    const b = await ready();
    const g = await b.generateDek();
    kms.throttleNext(2, 'Decrypt');
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    const m = b.metrics();
    expect(m.backend).toBe('aws_kms');
    expect(m.retries.Decrypt).toBe(2);
    expect(m.failures.throttled).toBe(2);
    expect(m.calls.Decrypt).toBe(1 + 3); // init round trip + 3 attempts
  });

  it('retries are bounded: persistent throttling fails with a message naming the DEK reuse settings', async () => {
    const b = await ready();
    kms.throttleNext(100, 'GenerateDataKey');
    const e = await rejection(b.generateDek());
    expect(e).toBeInstanceOf(RemoteKekError);
    expect((e as RemoteKekError).kind).toBe('throttled');
    expect(e.message).toContain('after 4 attempts');
    expect(e.message).toContain('kek.dek.max_uses');
    expect(b.metrics().errors.GenerateDataKey).toBe(1);
  });

  it('a key disabled after startup: writes fail saying so; reads are backend_unavailable', async () => {
    const b = await ready();
    const g = await b.generateDek();
    key.state = 'Disabled';
    const e = await rejection(b.generateDek());
    expect((e as RemoteKekError).kind).toBe('disabled');
    expect(e.message).toContain('DisabledException');
    expect(e.message).toContain('VIGILO_CMEK_AWS_KMS_KEY_ID');
    const u = await rejection(b.unwrap(g.wrapped));
    expect((u as CMEKDecryptionError).reason).toBe('backend_unavailable');
    expect(u.message).toContain('disabled');
  });

  it('AccessDenied at runtime names the action (not retried)', async () => {
    const b = await ready();
    const g = await b.generateDek();
    kms.deny('Decrypt');
    const before = kms.count('Decrypt');
    const e = await rejection(b.unwrap(g.wrapped));
    expect(e.message).toContain('grant kms:Decrypt');
    expect(kms.count('Decrypt')).toBe(before + 1);
    kms.deny('ReEncryptFrom');
    const r = await rejection(b.rewrap(g.wrapped));
    expect(r.message).toContain('kms:ReEncryptFrom and kms:ReEncryptTo');
  });

  it('KMSInternalException and dropped connections are retried', async () => {
    const b = await ready();
    const g = await b.generateDek();
    kms.failNext(1, 'KMSInternalException', 500, 'Decrypt');
    kms.dropNext(2, 'Decrypt');
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    const m = b.metrics();
    expect(m.failures.server_error).toBe(1);
    expect(m.failures.network).toBe(2);
    expect(m.retries.Decrypt).toBe(3);
  });
});
