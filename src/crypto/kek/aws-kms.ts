// The `aws_kms` KEK backend: an AWS KMS symmetric key holds the KEK.
//   new DEK  GenerateDataKey {KeySpec: AES_256}   (32 bytes + CiphertextBlob)
//   wrap     Encrypt
//   unwrap   Decrypt   (KeyId given: KMS refuses a blob of any other key)
//   rewrap   ReEncrypt (the DEK stays inside KMS)
// Every call carries EncryptionContext {"purpose": "cmek:v1"}: KMS binds it to
// the CiphertextBlob, so a blob made for another purpose (or by another app
// using the same key) does not decrypt here, key policies can require it, and
// CloudTrail shows it. In the envelope the KEK id is the key ARN KMS reports
// and the wrapped bytes are the CiphertextBlob. Retries are ours (SDK
// maxAttempts 1) so they are bounded, jittered and counted in metrics().
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  ReEncryptCommand,
  type KMSClientConfig,
} from '@aws-sdk/client-kms';
import type { KekConfig } from '../../config/types.js';
import { log as rootLog, type Logger } from '../../log.js';
import { CMEKDecryptionError, KekConfigError } from '../errors.js';
import { classifyKms, describeKmsFailure, KMS_SETTING, type KmsTarget } from './aws-kms-errors.js';
import { DEFAULT_RETRY, lastError, RemoteCounters, RemoteKekError, withRetry, type RemoteMetrics, type RetryPolicy } from './retry.js';
import { BackendTag, type KekBackend, type WrappedDek } from './types.js';

/** Bound to every wrapped DEK; part of the on-disk contract (docs/KEK_BACKENDS.md). */
export const ENCRYPTION_CONTEXT: Readonly<Record<string, string>> = Object.freeze({ purpose: 'cmek:v1' });

export interface AwsKmsBackendOptions {
  retry?: RetryPolicy;
  /** Deadline of one request. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  log?: Logger;
  /** Extra client settings (tests pass credentials; production uses the standard chain). */
  client?: Partial<KMSClientConfig>;
}

const DEK_BYTES = 32;
const EMPTY = Buffer.alloc(0);
const KEY_ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key\/([A-Za-z0-9-]{1,128})$/;

/** partition, region and account of a key ARN, or undefined. */
export function parseKeyArn(arn: string): { scope: string; keyId: string } | undefined {
  const m = KEY_ARN.exec(arn);
  return m ? { scope: `${m[1]}:${m[2]}:${m[3]}`, keyId: m[4]! } : undefined;
}

/** Copies key bytes out of an SDK array and wipes the SDK's copy. */
function takeBytes(a: Uint8Array | undefined): Buffer {
  if (!a) return EMPTY;
  const b = Buffer.from(a);
  a.fill(0);
  return b;
}

export class AwsKmsBackend implements KekBackend {
  readonly name = 'aws_kms' as const;
  readonly tag = BackendTag.aws_kms;
  private readonly client: KMSClient;
  private readonly counters = new RemoteCounters('aws_kms');
  private readonly retry: RetryPolicy;
  private readonly log: Logger;
  private arn = '';
  private scope = '';
  private ready = false;

  constructor(
    readonly target: KmsTarget,
    /** The primary backend (kek.backend = aws_kms): init() proves it can generate and unwrap DEKs. */
    private readonly isPrimary: boolean,
    o: AwsKmsBackendOptions = {},
  ) {
    this.retry = o.retry ?? DEFAULT_RETRY;
    this.log = (o.log ?? rootLog()).child({ kek: 'aws_kms' });
    this.client = new KMSClient({
      ...(target.region ? { region: target.region } : {}),
      ...(target.endpoint ? { endpoint: target.endpoint } : {}),
      maxAttempts: 1,
      // throwOnRequestTimeout: without it this SDK only warns when requestTimeout passes.
      requestHandler: { connectionTimeout: o.connectTimeoutMs ?? 3000, requestTimeout: o.timeoutMs ?? 10_000, throwOnRequestTimeout: true },
      ...o.client,
    });
  }

  /** DescribeKey (exists, enabled, symmetric ENCRYPT_DECRYPT), then a DEK round trip when primary. */
  async init(): Promise<void> {
    if (this.ready) return;
    const fail = (msg: string): never => {
      throw new KekConfigError(`aws_kms KEK backend: ${msg}`);
    };
    try {
      await this.client.config.region();
    } catch {
      fail(`no AWS region: set ${KMS_SETTING.region}`);
    }
    let m: Record<string, unknown> = {};
    try {
      const r = await this.call('DescribeKey', () => this.client.send(new DescribeKeyCommand({ KeyId: this.target.keyId })));
      m = (r.KeyMetadata ?? {}) as Record<string, unknown>;
    } catch (e) {
      fail(this.explain(e, 'DescribeKey').message);
    }
    const arn = String(m.Arn ?? '');
    const parsed = parseKeyArn(arn);
    if (!parsed) fail(`DescribeKey returned no key ARN for ${this.target.keyId}`);
    if (m.KeyState !== 'Enabled' || m.Enabled !== true) {
      const how = m.KeyState === 'Disabled' ? 'enable it (aws kms enable-key)' : m.KeyState === 'PendingDeletion' ? 'cancel its deletion (aws kms cancel-key-deletion) and enable it' : 'make it usable';
      fail(`KMS key ${arn} is ${String(m.KeyState)}: ${how}, or set ${KMS_SETTING.keyId} to an enabled key`);
    }
    if (m.KeyUsage !== 'ENCRYPT_DECRYPT' || (m.KeySpec ?? m.CustomerMasterKeySpec) !== 'SYMMETRIC_DEFAULT') {
      fail(`KMS key ${arn} is ${String(m.KeySpec)} for ${String(m.KeyUsage)}; DEK wrapping needs a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key (${KMS_SETTING.keyId})`);
    }
    this.arn = arn;
    this.scope = parsed!.scope;
    if (this.isPrimary) {
      // Proves GenerateDataKey and Decrypt (and any EncryptionContext condition in the key policy) now, not at the first write.
      try {
        const g = await this.generateDek();
        const back = await this.unwrap(g.wrapped);
        const same = back.equals(g.dek);
        g.dek.fill(0);
        back.fill(0);
        if (!same) fail(`a DEK round trip through ${arn} did not give back the DEK`);
      } catch (e) {
        if (e instanceof KekConfigError) throw e;
        fail((e as Error).message);
      }
    }
    this.ready = true;
    this.log.info({ keyArn: arn, region: await this.client.config.region() }, 'AWS KMS KEK ready');
  }

  primaryKekId(): Buffer {
    return Buffer.from(this.arn, 'latin1');
  }

  /**
   * Keys of the configured key's account, region and partition. A value naming
   * a key elsewhere is refused without a call: that key's owner could have made
   * it decrypt to anything (confused deputy).
   */
  hasKek(kekId: Buffer): boolean {
    const p = parseKeyArn(kekId.toString('latin1'));
    return p !== undefined && p.scope === this.scope;
  }

  async generateDek(): Promise<{ dek: Buffer; wrapped: WrappedDek }> {
    let r;
    try {
      r = await this.call('GenerateDataKey', () =>
        this.client.send(new GenerateDataKeyCommand({ KeyId: this.target.keyId, KeySpec: 'AES_256', EncryptionContext: { ...ENCRYPTION_CONTEXT } })),
      );
    } catch (e) {
      throw this.remoteError(e, 'GenerateDataKey');
    }
    const dek = takeBytes(r.Plaintext);
    if (dek.length !== DEK_BYTES || !r.CiphertextBlob || !r.KeyId) {
      dek.fill(0);
      throw new RemoteKekError('aws_kms', 'bad_response', `GenerateDataKey did not return a ${DEK_BYTES}-byte key, a CiphertextBlob and a KeyId`);
    }
    return { dek, wrapped: this.wrappedOf(r.KeyId, r.CiphertextBlob) };
  }

  async wrap(dek: Buffer): Promise<WrappedDek> {
    let r;
    try {
      r = await this.call('Encrypt', () =>
        this.client.send(new EncryptCommand({ KeyId: this.target.keyId, Plaintext: dek, EncryptionContext: { ...ENCRYPTION_CONTEXT } })),
      );
    } catch (e) {
      throw this.remoteError(e, 'Encrypt');
    }
    if (!r.CiphertextBlob || !r.KeyId) throw new RemoteKekError('aws_kms', 'bad_response', 'Encrypt did not return a CiphertextBlob and a KeyId');
    return this.wrappedOf(r.KeyId, r.CiphertextBlob);
  }

  async unwrap(w: WrappedDek): Promise<Buffer> {
    const arn = this.checkWrapped(w);
    let r;
    try {
      r = await this.call('Decrypt', () =>
        this.client.send(new DecryptCommand({ CiphertextBlob: w.wrapped, KeyId: arn, EncryptionContext: { ...ENCRYPTION_CONTEXT } })),
      );
    } catch (e) {
      throw this.unwrapError(e, arn);
    }
    const dek = takeBytes(r.Plaintext);
    if (dek.length !== DEK_BYTES || r.KeyId !== arn) {
      dek.fill(0);
      throw new CMEKDecryptionError('unwrap_failed', { backend: 'aws_kms', kekId: arn, detail: `KMS Decrypt did not return a ${DEK_BYTES}-byte DEK of ${arn}` });
    }
    return dek;
  }

  /** ReEncrypt under the configured key: the DEK never leaves KMS. */
  async rewrap(w: WrappedDek): Promise<WrappedDek> {
    const arn = this.checkWrapped(w);
    let r;
    try {
      r = await this.call('ReEncrypt', () =>
        this.client.send(
          new ReEncryptCommand({
            CiphertextBlob: w.wrapped,
            SourceKeyId: arn,
            SourceEncryptionContext: { ...ENCRYPTION_CONTEXT },
            DestinationKeyId: this.target.keyId,
            DestinationEncryptionContext: { ...ENCRYPTION_CONTEXT },
          }),
        ),
      );
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') throw this.unwrapError(e, arn);
      throw this.remoteError(e, 'ReEncrypt');
    }
    if (!r.CiphertextBlob || !r.KeyId) throw new RemoteKekError('aws_kms', 'bad_response', 'ReEncrypt did not return a CiphertextBlob and a KeyId');
    return this.wrappedOf(r.KeyId, r.CiphertextBlob);
  }

  metrics(): RemoteMetrics {
    return this.counters.snapshot();
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  // ---- helpers --------------------------------------------------------------

  private checkWrapped(w: WrappedDek): string {
    const arn = w.kekId.toString('latin1');
    if (w.tag !== BackendTag.aws_kms || !parseKeyArn(arn) || w.wrapped.length === 0) {
      throw new CMEKDecryptionError('unknown_kek', { backend: 'aws_kms', detail: 'not a KMS-wrapped DEK (KEK id must be a key ARN)' });
    }
    return arn;
  }

  /** KMS reports the key ARN; a new one (an alias moved to another key) becomes the primary id. */
  private wrappedOf(keyArn: string, blob: Uint8Array): WrappedDek {
    const p = parseKeyArn(keyArn);
    if (!p) throw new RemoteKekError('aws_kms', 'bad_response', `KMS reported a key id that is not a key ARN: ${keyArn}`);
    if (keyArn !== this.arn && this.ready) {
      this.log.info({ from: this.arn, to: keyArn }, 'KMS key behind the configured KeyId changed');
      this.arn = keyArn;
      this.scope = p.scope;
    } else if (!this.arn) {
      this.arn = keyArn;
      this.scope = p.scope;
    }
    return { tag: BackendTag.aws_kms, kekId: Buffer.from(keyArn, 'latin1'), nonce: EMPTY, wrapped: Buffer.from(blob) };
  }

  private call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(op, fn, { policy: this.retry, counters: this.counters, classify: classifyKms });
  }

  private explain(e: unknown, op: string): { kind: string; message: string } {
    const { error, attempts } = lastError(e);
    return describeKmsFailure(error, op, this.target, this.arn || this.target.keyId, attempts);
  }

  private remoteError(e: unknown, op: string): Error {
    if (e instanceof RemoteKekError) return e;
    const d = this.explain(e, op);
    return new RemoteKekError('aws_kms', d.kind, d.message, { cause: lastError(e).error });
  }

  private unwrapError(e: unknown, arn: string): Error {
    const { error, attempts } = lastError(e);
    const name = (error as { name?: string }).name;
    if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') {
      return new CMEKDecryptionError('unwrap_failed', {
        backend: 'aws_kms',
        kekId: arn,
        detail: `KMS ${name}: the wrapped DEK was altered, belongs to another key, or was made with another EncryptionContext`,
      });
    }
    const d = describeKmsFailure(error, 'Decrypt', this.target, arn, attempts);
    return new CMEKDecryptionError(d.kind === 'not_found' ? 'unknown_kek' : 'backend_unavailable', { backend: 'aws_kms', kekId: arn, detail: d.message, cause: error });
  }
}

/** Validates kek.aws_kms and builds the backend; init() then checks the key with KMS. */
export async function createAwsKmsBackend(kek: KekConfig, opts: AwsKmsBackendOptions = {}): Promise<AwsKmsBackend> {
  const k = kek.awsKms;
  if (!k?.keyId) throw new KekConfigError(`aws_kms KEK backend: no KMS key: set ${KMS_SETTING.keyId} (key id, key ARN or alias/NAME)`);
  if (k.endpoint) {
    try {
      const u = new URL(k.endpoint);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
    } catch {
      throw new KekConfigError(`aws_kms KEK backend: ${KMS_SETTING.endpoint} must be an https:// URL, got "${k.endpoint}"`);
    }
  }
  const target: KmsTarget = { keyId: k.keyId, ...(k.region ? { region: k.region } : {}), ...(k.endpoint ? { endpoint: k.endpoint } : {}) };
  return new AwsKmsBackend(target, kek.backend === 'aws_kms', opts);
}
