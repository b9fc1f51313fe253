// An in-process AWS KMS speaking the AWS JSON 1.1 protocol the real SDK uses:
// `POST /`, `X-Amz-Target: TrentService.<Operation>`, `Content-Type:
// application/x-amz-json-1.1`, blobs as base64, errors as HTTP 400 with
// `{"__type":"<Code>","message":"..."}`. Requests must carry a valid SigV4
// signature for a known access key (checked the way AWS does), so a wrong
// region or secret fails as it would against AWS.
// Implemented: DescribeKey, GenerateDataKey, Encrypt, Decrypt, ReEncrypt,
// RotateKeyOnDemand; keys by id, ARN, alias name or alias ARN; key states
// (Enabled/Disabled/PendingDeletion); EncryptionContext bound as AES-GCM AAD
// (a mismatch is InvalidCiphertextException); a CiphertextBlob that embeds the
// key id and the key-material version (so Decrypt needs no KeyId and
// rotated material stays decryptable); per-operation AccessDenied; injected
// ThrottlingException; latency.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

export interface FakeKmsKey {
  keyId: string;
  arn: string;
  state: KeyState;
  description: string;
  created: number;
  /** Backing key material, oldest first; rotation appends. */
  materials: Buffer[];
  keyUsage: 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY';
  keySpec: string;
}

export interface KmsRecordedRequest {
  op: string;
  status: number;
  errorType?: string;
  /** The request's KeyId / DestinationKeyId as sent (not resolved). */
  keyId?: string;
  encryptionContext?: Record<string, string>;
}

class KmsError extends Error {
  constructor(
    readonly type: string,
    message?: string,
    readonly status = 400,
  ) {
    super(message ?? type);
  }
}

const BLOB_MAGIC = 0x01;
const ID_LEN = 36; // a UUID
const IV = 12;
const TAG = 16;

/** Sorted-key JSON: the same context always gives the same AAD. */
function canonicalContext(ec: unknown): string {
  if (ec === undefined || ec === null) return '{}';
  if (typeof ec !== 'object' || Array.isArray(ec)) throw new KmsError('ValidationException', 'EncryptionContext must be a map of strings');
  const e = ec as Record<string, unknown>;
  return JSON.stringify(Object.fromEntries(Object.keys(e).sort().map((k) => [k, String(e[k])])));
}

function b64(s: unknown, field: string): Buffer {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new KmsError('SerializationException', `${field} is not valid base64`);
  return Buffer.from(s, 'base64');
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export interface FakeKmsOptions {
  region?: string;
  account?: string;
  latencyMs?: number;
}

export class FakeKms {
  readonly server: http.Server;
  url = '';
  readonly region: string;
  readonly account: string;
  latencyMs: number;
  readonly requests: KmsRecordedRequest[] = [];
  /** Access key id -> secret; requests signed with anything else fail like AWS does. */
  readonly credentials = new Map<string, string>();
  private readonly keys = new Map<string, FakeKmsKey>();
  private readonly aliases = new Map<string, string>();
  private readonly denied = new Set<string>();
  private throttles: { op?: string; remaining: number }[] = [];
  private faults: { op?: string; remaining: number; error?: KmsError }[] = [];
  private readonly sockets = new Set<Socket>();
  private down = false;

  constructor(o: FakeKmsOptions = {}) {
    this.region = o.region ?? 'us-east-1';
    this.account = o.account ?? '111122223333';
    this.latencyMs = o.latencyMs ?? 0;
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      if (this.down) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  cutNetwork(): void {
    this.down = true;
    for (const s of this.sockets) s.destroy();
  }

  restoreNetwork(): void {
    this.down = false;
  }

  // ---- state set-up -----------------------------------------------------------------

  createKey(o: { alias?: string; description?: string; keyUsage?: 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY'; keySpec?: string } = {}): FakeKmsKey {
    const keyId = randomUUID();
    const k: FakeKmsKey = {
      keyId,
      arn: `arn:aws:kms:${this.region}:${this.account}:key/${keyId}`,
      state: 'Enabled',
      description: o.description ?? '',
      created: Date.now() / 1000,
      materials: [randomBytes(32)],
      keyUsage: o.keyUsage ?? 'ENCRYPT_DECRYPT',
      keySpec: o.keySpec ?? 'SYMMETRIC_DEFAULT',
    };
    this.keys.set(keyId, k);
    if (o.alias) this.aliases.set(o.alias, keyId);
    return k;
  }

  setAlias(alias: string, key: FakeKmsKey): void {
    this.aliases.set(alias, key.keyId);
  }

  /** kms:<action> is denied to the caller (on every key, or on one). */
  deny(action: string, key?: FakeKmsKey): void {
    this.denied.add(key ? `${action}|${key.keyId}` : action);
  }

  allow(action: string, key?: FakeKmsKey): void {
    this.denied.delete(key ? `${action}|${key.keyId}` : action);
  }

  /** The next `count` requests (of `op`, or any) get ThrottlingException. */
  throttleNext(count: number, op?: string): void {
    this.throttles.push(op ? { op, remaining: count } : { remaining: count });
  }

  /** The next `count` requests (of `op`, or any) fail with this error code (e.g. KMSInternalException, HTTP 500). */
  failNext(count: number, type: string, status = 500, op?: string): void {
    this.faults.push({ remaining: count, error: new KmsError(type, undefined, status), ...(op ? { op } : {}) });
  }

  /** The next `count` requests (of `op`, or any) lose their connection without an answer. */
  dropNext(count: number, op?: string): void {
    this.faults.push({ remaining: count, ...(op ? { op } : {}) });
  }

  count(op: string): number {
    return this.requests.filter((r) => r.op === op).length;
  }

  // ---- HTTP -----------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : target;
    const rec: KmsRecordedRequest = { op, status: 200 };
    this.requests.push(rec);
    let status = 200;
    let out: unknown;
    try {
      if (req.method !== 'POST' || (req.url ?? '/') !== '/') throw new KmsError('UnknownOperationException', undefined, 404);
      if (req.headers['content-type'] !== 'application/x-amz-json-1.1') {
        throw new KmsError('SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      }
      this.verifySignature(req, raw);
      const fault = this.faults.find((f) => !f.op || f.op === op);
      if (fault) {
        if (--fault.remaining <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
        if (!fault.error) {
          rec.status = -1;
          req.socket.destroy();
          return;
        }
        throw fault.error;
      }
      const th = this.throttles.find((t) => !t.op || t.op === op);
      if (th) {
        if (--th.remaining <= 0) this.throttles.splice(this.throttles.indexOf(th), 1);
        throw new KmsError('ThrottlingException', 'Rate exceeded');
      }
      let input: Record<string, unknown>;
      try {
        input = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
      } catch {
        throw new KmsError('SerializationException', 'Malformed JSON');
      }
      rec.keyId = (input.DestinationKeyId ?? input.KeyId) as string | undefined;
      if (input.EncryptionContext) rec.encryptionContext = input.EncryptionContext as Record<string, string>;
      out = this.dispatch(op, input);
    } catch (e) {
      if (!(e instanceof KmsError)) throw e;
      status = e.status;
      rec.errorType = e.type;
      out = e.message === e.type ? { __type: e.type } : { __type: e.type, message: e.message };
    }
    rec.status = status;
    const body = JSON.stringify(out);
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-requestid': randomUUID(),
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  /** SigV4 as AWS checks it: known key, scope (date/region/kms), signed headers, signature. */
  private verifySignature(req: http.IncomingMessage, body: Buffer): void {
    const auth = req.headers.authorization;
    if (!auth) throw new KmsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) throw new KmsError('IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature');
    const [, akid, date, region, service, signedHeaders, signature] = m as unknown as string[];
    const secret = this.credentials.get(akid!);
    if (secret === undefined) throw new KmsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (service !== 'kms') throw new KmsError('InvalidSignatureException', `Credential should be scoped to correct service: 'kms'.`);
    if (region !== this.region) throw new KmsError('InvalidSignatureException', `Credential should be scoped to a valid region.`);
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const at = Date.parse(amzDate.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'));
    if (!amzDate.startsWith(date!) || !Number.isFinite(at) || Math.abs(at - Date.now()) > 5 * 60_000) {
      throw new KmsError('InvalidSignatureException', 'Signature expired or x-amz-date does not match the credential scope');
    }
    const names = signedHeaders!.split(';');
    if (!names.includes('host') || !names.includes('x-amz-date')) throw new KmsError('InvalidSignatureException', 'host and x-amz-date must be signed');
    const canonicalHeaders = names
      .map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`)
      .join('');
    const canonicalRequest = ['POST', '/', '', canonicalHeaders, signedHeaders, sha256hex(body)].join('\n');
    const scope = `${date}/${region}/kms/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
    const kSigning = hmac(hmac(hmac(hmac(`AWS4${secret}`, date!), region!), 'kms'), 'aws4_request');
    const expected = createHmac('sha256', kSigning).update(toSign, 'utf8').digest();
    if (!timingSafeEqual(expected, Buffer.from(signature!, 'hex'))) {
      throw new KmsError(
        'InvalidSignatureException',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
      );
    }
  }

  private dispatch(op: string, i: Record<string, unknown>): unknown {
    switch (op) {
      case 'DescribeKey': {
        const k = this.resolve(i.KeyId);
        this.authorize('DescribeKey', k);
        return { KeyMetadata: this.metadata(k) };
      }
      case 'GenerateDataKey': {
        const k = this.resolve(i.KeyId);
        this.authorize('GenerateDataKey', k);
        this.usable(k);
        if ((i.KeySpec === undefined) === (i.NumberOfBytes === undefined)) {
          throw new KmsError('ValidationException', 'Please specify either number of bytes or key spec.');
        }
        const n = i.KeySpec === 'AES_256' ? 32 : i.KeySpec === 'AES_128' ? 16 : Number(i.NumberOfBytes);
        if (!Number.isInteger(n) || n < 1 || n > 1024) throw new KmsError('ValidationException', '1 validation error detected: KeySpec or NumberOfBytes');
        const pt = randomBytes(n);
        return { CiphertextBlob: this.seal(k, pt, i.EncryptionContext).toString('base64'), Plaintext: pt.toString('base64'), KeyId: k.arn };
      }
      case 'Encrypt': {
        const k = this.resolve(i.KeyId);
        this.authorize('Encrypt', k);
        this.usable(k);
        const pt = b64(i.Plaintext, 'Plaintext');
        if (pt.length < 1 || pt.length > 4096) throw new KmsError('ValidationException', 'Plaintext must be 1 to 4096 bytes');
        return { CiphertextBlob: this.seal(k, pt, i.EncryptionContext).toString('base64'), KeyId: k.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'Decrypt': {
        const { key, plaintext } = this.open(b64(i.CiphertextBlob, 'CiphertextBlob'), i.EncryptionContext, i.KeyId, 'Decrypt');
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'ReEncrypt': {
        const src = this.open(b64(i.CiphertextBlob, 'CiphertextBlob'), i.SourceEncryptionContext, i.SourceKeyId, 'ReEncryptFrom');
        const dest = this.resolve(i.DestinationKeyId);
        this.authorize('ReEncryptTo', dest);
        this.usable(dest);
        const blob = this.seal(dest, src.plaintext, i.DestinationEncryptionContext);
        src.plaintext.fill(0);
        return {
          CiphertextBlob: blob.toString('base64'),
          SourceKeyId: src.key.arn,
          KeyId: dest.arn,
          SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        };
      }
      case 'RotateKeyOnDemand': {
        const k = this.resolve(i.KeyId);
        this.authorize('RotateKeyOnDemand', k);
        this.usable(k);
        k.materials.push(randomBytes(32));
        return { KeyId: k.keyId };
      }
      default:
        throw new KmsError('UnknownOperationException');
    }
  }

  /** KeyId as key id, key ARN, alias name or alias ARN. */
  private resolve(keyId: unknown): FakeKmsKey {
    if (typeof keyId !== 'string' || keyId === '') throw new KmsError('ValidationException', '1 validation error detected: Value null at \'keyId\' failed to satisfy constraint: Member must not be null');
    const prefix = `arn:aws:kms:${this.region}:${this.account}:`;
    let id = keyId;
    if (id.startsWith('arn:')) {
      if (!id.startsWith(prefix)) throw new KmsError('NotFoundException', `Invalid arn ${this.region}`);
      id = id.slice(prefix.length);
      if (id.startsWith('key/')) id = id.slice(4);
    }
    if (id.startsWith('alias/')) {
      const target = this.aliases.get(id);
      if (!target) throw new KmsError('NotFoundException', `Alias ${prefix}${id} is not found.`);
      id = target;
    }
    const k = this.keys.get(id);
    if (!k) throw new KmsError('NotFoundException', `Key '${prefix}key/${id}' does not exist`);
    return k;
  }

  private authorize(action: string, k: FakeKmsKey): void {
    if (this.denied.has(action) || this.denied.has(`${action}|${k.keyId}`)) {
      throw new KmsError(
        'AccessDeniedException',
        `User: arn:aws:iam::${this.account}:user/pgcmek is not authorized to perform: kms:${action} on resource: ${k.arn} because no identity-based policy allows the kms:${action} action`,
      );
    }
  }

  private usable(k: FakeKmsKey): void {
    if (k.state === 'Disabled') throw new KmsError('DisabledException', `${k.arn} is disabled.`);
    if (k.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${k.arn} is pending deletion.`);
    if (k.keyUsage !== 'ENCRYPT_DECRYPT') {
      throw new KmsError('InvalidKeyUsageException', `${k.arn} key usage is ${k.keyUsage} which is not valid for this operation.`);
    }
  }

  private metadata(k: FakeKmsKey): Record<string, unknown> {
    return {
      AWSAccountId: this.account,
      KeyId: k.keyId,
      Arn: k.arn,
      CreationDate: k.created,
      Enabled: k.state === 'Enabled',
      Description: k.description,
      KeyUsage: k.keyUsage,
      KeyState: k.state,
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      CustomerMasterKeySpec: k.keySpec,
      KeySpec: k.keySpec,
      EncryptionAlgorithms: k.keySpec === 'SYMMETRIC_DEFAULT' ? ['SYMMETRIC_DEFAULT'] : ['RSAES_OAEP_SHA_256'],
      MultiRegion: false,
      ...(k.state === 'PendingDeletion' ? { DeletionDate: Date.now() / 1000 + 7 * 86400, PendingDeletionWindowInDays: 7 } : {}),
    };
  }

  /** blob = 0x01 | key id (36) | material version u32 | iv 12 | ciphertext | tag 16; AAD binds key id and context. */
  private seal(k: FakeKmsKey, pt: Buffer, ec: unknown): Buffer {
    const version = k.materials.length - 1;
    const head = Buffer.alloc(1 + ID_LEN + 4);
    head[0] = BLOB_MAGIC;
    head.write(k.keyId, 1, 'latin1');
    head.writeUInt32BE(version, 1 + ID_LEN);
    const iv = randomBytes(IV);
    const c = createCipheriv('aes-256-gcm', k.materials[version]!, iv);
    c.setAAD(Buffer.concat([head, Buffer.from(canonicalContext(ec), 'utf8')]));
    return Buffer.concat([head, iv, c.update(pt), c.final(), c.getAuthTag()]);
  }

  private open(blob: Buffer, ec: unknown, keyId: unknown, action: string): { key: FakeKmsKey; plaintext: Buffer } {
    if (blob.length < 1 + ID_LEN + 4 + IV + TAG || blob[0] !== BLOB_MAGIC) throw new KmsError('InvalidCiphertextException');
    const id = blob.toString('latin1', 1, 1 + ID_LEN);
    const key = this.keys.get(id);
    if (!key) throw new KmsError('InvalidCiphertextException');
    if (keyId !== undefined && this.resolve(keyId) !== key) {
      throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation.');
    }
    this.authorize(action, key);
    this.usable(key);
    const version = blob.readUInt32BE(1 + ID_LEN);
    const material = key.materials[version];
    if (!material) throw new KmsError('InvalidCiphertextException');
    const head = blob.subarray(0, 1 + ID_LEN + 4);
    const iv = blob.subarray(head.length, head.length + IV);
    const d = createDecipheriv('aes-256-gcm', material, iv);
    d.setAAD(Buffer.concat([head, Buffer.from(canonicalContext(ec), 'utf8')]));
    d.setAuthTag(blob.subarray(blob.length - TAG));
    try {
      return { key, plaintext: Buffer.concat([d.update(blob.subarray(head.length + IV, blob.length - TAG)), d.final()]) };
    } catch {
      throw new KmsError('InvalidCiphertextException');
    }
  }
}
