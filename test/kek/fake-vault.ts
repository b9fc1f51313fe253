// An in-process HashiCorp Vault that speaks the documented HTTP API of the parts
// pgcmek uses: the Transit secrets engine (keys with versions, encrypt, decrypt,
// rewrap, datakey, rotate, key config, batch_input), token lookup-self /
// renew-self, sys/health, namespaces (X-Vault-Namespace), path ACLs (403
// "permission denied") and sealing (503 "Vault is sealed"). Response shapes,
// status codes and error strings follow Vault's API docs and source
// (builtin/logical/transit, sdk/helper/keysutil): a 400 carries `{"errors":[...]}`,
// a batch with a failed item answers 400 with `data.batch_results`, ciphertexts
// are `vault:v<N>:` + base64(nonce | AES-256-GCM ciphertext | tag).
// Tests also use it to inject faults: dropped connections, canned statuses, latency.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { batchOp, encrypt, HttpError, keyConfig, keyInfo, newKey, rotateKey, type TransitKey } from './fake-vault-transit.js';

export type { TransitKey };

export type Capability = 'create' | 'read' | 'update' | 'delete' | 'list' | 'sudo' | 'deny';

/** One ACL rule: `path` is exact or ends in `*` (prefix), relative to the token's namespace. */
export interface PathRule {
  path: string;
  capabilities: Capability[];
}

export interface FakeToken {
  id: string;
  accessor: string;
  /** Namespace the token was created in ('' = root); it can reach that namespace and its children. */
  namespace: string;
  /** null = root policy (everything). */
  rules: PathRule[] | null;
  policies: string[];
  renewable: boolean;
  /** Seconds; 0 = never expires (root tokens). */
  creationTtl: number;
  explicitMaxTtl: number;
  issuedAt: number;
  expiresAt: number;
  renewals: number;
}

export interface RecordedRequest {
  method: string;
  /** Path after /v1/, without the query. */
  path: string;
  namespace: string;
  status: number;
  batchSize?: number;
}

type Fault = { kind: 'status'; status: number; errors: string[] } | { kind: 'drop' };

interface PendingFault {
  fault: Fault;
  match?: RegExp;
  remaining: number;
}

export interface FakeVaultOptions {
  /** Serve HTTPS with this certificate (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Delay before every response (simulated network round trip). */
  latencyMs?: number;
}

function ruleMatches(rule: string, path: string): boolean {
  return rule.endsWith('*') ? path.startsWith(rule.slice(0, -1)) : rule === path;
}

export class FakeVault {
  readonly server: http.Server;
  url = '';
  latencyMs: number;
  sealed = false;
  /** When true every new connection is reset: the network is down. */
  down = false;
  readonly requests: RecordedRequest[] = [];
  readonly rootToken: string;
  private readonly tokens = new Map<string, FakeToken>();
  private readonly keys = new Map<string, TransitKey>();
  private readonly mounts = new Set<string>();
  private readonly namespaces = new Set<string>(['']);
  private readonly faults: PendingFault[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(opts: FakeVaultOptions = {}) {
    this.latencyMs = opts.latencyMs ?? 0;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    this.server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
    this.server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      if (this.down) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.mounts.add('|transit');
    this.rootToken = `hvs.${randomBytes(18).toString('base64url')}`;
    this.tokens.set(this.rootToken, {
      id: this.rootToken,
      accessor: randomBytes(12).toString('base64url'),
      namespace: '',
      rules: null,
      policies: ['root'],
      renewable: false,
      creationTtl: 0,
      explicitMaxTtl: 0,
      issuedAt: Date.now(),
      expiresAt: 0,
      renewals: 0,
    });
  }

  async start(host = '127.0.0.1'): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, host, resolve));
    const { port } = this.server.address() as AddressInfo;
    const scheme = this.server instanceof https.Server ? 'https' : 'http';
    this.url = `${scheme}://${host === '127.0.0.1' ? '127.0.0.1' : host}:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Network outage on: open connections are cut and new ones reset. */
  cutNetwork(): void {
    this.down = true;
    for (const s of this.sockets) s.destroy();
  }

  restoreNetwork(): void {
    this.down = false;
  }

  // ---- state set-up -----------------------------------------------------------------

  addNamespace(ns: string): void {
    this.namespaces.add(ns.replace(/^\/+|\/+$/g, ''));
  }

  enableTransit(mount: string, namespace = ''): void {
    this.mounts.add(`${namespace}|${mount}`);
  }

  createKey(name: string, o: { mount?: string; namespace?: string } = {}): TransitKey {
    const k = newKey(name);
    this.keys.set(`${o.namespace ?? ''}|${o.mount ?? 'transit'}|${name}`, k);
    return k;
  }

  key(name: string, o: { mount?: string; namespace?: string } = {}): TransitKey {
    const k = this.keys.get(`${o.namespace ?? ''}|${o.mount ?? 'transit'}|${name}`);
    if (!k) throw new Error(`no key ${name}`);
    return k;
  }

  rotateKey(k: TransitKey): void {
    rotateKey(k);
  }

  /**
   * A token whose ACL is `rules` (null = root). `ttl` 0 = never expires.
   * Returns the token's id (the secret a client sends).
   */
  createToken(o: {
    rules: PathRule[] | null;
    policies?: string[];
    ttl?: number;
    renewable?: boolean;
    explicitMaxTtl?: number;
    namespace?: string;
  }): string {
    const id = `hvs.${randomBytes(18).toString('base64url')}`;
    const now = Date.now();
    const ttl = o.ttl ?? 3600;
    this.tokens.set(id, {
      id,
      accessor: randomBytes(12).toString('base64url'),
      namespace: o.namespace ?? '',
      rules: o.rules,
      policies: o.policies ?? ['default', 'pgcmek'],
      renewable: o.renewable ?? true,
      creationTtl: ttl,
      explicitMaxTtl: o.explicitMaxTtl ?? 0,
      issuedAt: now,
      expiresAt: ttl === 0 ? 0 : now + ttl * 1000,
      renewals: 0,
    });
    return id;
  }

  token(id: string): FakeToken {
    const t = this.tokens.get(id);
    if (!t) throw new Error('no such token');
    return t;
  }

  /** The next `count` requests whose path matches `match` get this status and errors. */
  failNext(count: number, status: number, errors: string[], match?: RegExp): void {
    this.faults.push({ fault: { kind: 'status', status, errors }, match, remaining: count });
  }

  /** The next `count` matching requests lose their connection without an answer. */
  dropNext(count: number, match?: RegExp): void {
    this.faults.push({ fault: { kind: 'drop' }, match, remaining: count });
  }

  /** Requests (counted) whose path matches. */
  count(match: RegExp): number {
    return this.requests.filter((r) => match.test(r.path)).length;
  }

  // ---- HTTP -----------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.startsWith('/v1/') ? url.pathname.slice(4) : url.pathname;
    const namespace = String(req.headers['x-vault-namespace'] ?? '').replace(/^\/+|\/+$/g, '');
    const rec: RecordedRequest = { method: req.method ?? 'GET', path, namespace, status: 0 };
    this.requests.push(rec);

    const fault = this.takeFault(path);
    if (fault?.kind === 'drop') {
      rec.status = -1;
      req.socket.destroy();
      return;
    }
    let status = 200;
    let body: unknown;
    try {
      if (fault?.kind === 'status') throw new HttpError(fault.status, fault.errors);
      let input: Record<string, unknown> = {};
      if (chunks.length) {
        try {
          input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          throw new HttpError(400, ['failed to parse JSON input: invalid character']);
        }
      }
      if (Array.isArray(input.batch_input)) rec.batchSize = input.batch_input.length;
      const out = this.route(req, path, namespace, input);
      status = out.status;
      body = out.body;
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      status = err.status;
      body = { errors: err.errors };
    }
    rec.status = status;
    if (status === 204) {
      res.writeHead(204).end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private takeFault(path: string): Fault | undefined {
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i]!;
      if (f.match && !f.match.test(path)) continue;
      if (--f.remaining <= 0) this.faults.splice(i, 1);
      return f.fault;
    }
    return undefined;
  }

  private route(req: http.IncomingMessage, path: string, ns: string, input: Record<string, unknown>): { status: number; body: unknown } {
    const method = req.method ?? 'GET';
    if (path === 'sys/health') return this.health();
    if (this.sealed) throw new HttpError(503, ['Vault is sealed']);
    if (!this.namespaces.has(ns)) throw new HttpError(404, [`no handler for route "${path}". route entry not found.`]);

    const raw = req.headers['x-vault-token'] ?? (req.headers.authorization?.startsWith('Bearer ') ? req.headers.authorization.slice(7) : undefined);
    const token = typeof raw === 'string' ? this.tokens.get(raw) : undefined;
    if (!token || (token.expiresAt !== 0 && token.expiresAt <= Date.now())) throw new HttpError(403, ['permission denied']);
    // A token reaches its own namespace and the ones below it.
    if (token.namespace !== '' && ns !== token.namespace && !ns.startsWith(token.namespace + '/')) {
      throw new HttpError(403, ['permission denied']);
    }
    const write = method === 'POST' || method === 'PUT';
    if (!write && method !== 'GET') throw new HttpError(405, ['unsupported operation']);

    // The `default` policy every token carries grants these two.
    if (path === 'auth/token/lookup-self') return this.ok(this.lookupSelf(token));
    if (path === 'auth/token/renew-self' && write) return this.renewSelf(token, input);
    if (path === 'sys/capabilities-self' && write) {
      const paths = Array.isArray(input.paths) ? input.paths.map(String) : typeof input.path === 'string' ? [input.path] : [];
      if (!paths.length) throw new HttpError(400, ['paths must be supplied']);
      const data: Record<string, string[]> = {};
      for (const p of paths) data[p] = this.capabilitiesOf(token, p);
      if (paths.length === 1) data.capabilities = data[paths[0]!]!;
      return { status: 200, body: { ...data, ...(this.ok(data).body as object) } };
    }

    const mount = this.mountOf(ns, path);
    if (!mount) throw new HttpError(404, [`no handler for route "${path}". route entry not found.`]);
    const rest = path.slice(mount.length + 1);
    this.authorize(token, path, write ? 'update' : 'read');
    const keyFor = (name: string) => this.keys.get(`${ns}|${mount}|${name}`);

    let m: RegExpMatchArray | null;
    if ((m = rest.match(/^keys\/([\w.-]+)$/))) {
      const k = keyFor(m[1]!);
      if (write) {
        if (!k) this.keys.set(`${ns}|${mount}|${m[1]}`, newKey(m[1]!));
        return { status: 204, body: undefined };
      }
      if (!k) throw new HttpError(404, []);
      return this.ok(keyInfo(k));
    }
    if ((m = rest.match(/^keys\/([\w.-]+)\/rotate$/)) && write) {
      const k = keyFor(m[1]!);
      if (!k) throw new HttpError(400, ['encryption key not found']);
      rotateKey(k);
      return this.ok(keyInfo(k));
    }
    if ((m = rest.match(/^keys\/([\w.-]+)\/config$/)) && write) {
      const k = keyFor(m[1]!);
      if (!k) throw new HttpError(400, ['encryption key not found']);
      keyConfig(k, input);
      return this.ok(keyInfo(k));
    }
    if (!write) throw new HttpError(405, ['unsupported operation']);
    if ((m = rest.match(/^(encrypt|decrypt|rewrap)\/([\w.-]+)$/))) {
      const k = keyFor(m[2]!);
      if (!k) throw new HttpError(400, ['encryption key not found']);
      const r = batchOp(m[1] as 'encrypt' | 'decrypt' | 'rewrap', k, input);
      return { status: r.status, body: this.ok(r.data).body };
    }
    if ((m = rest.match(/^datakey\/([\w.-]+)\/([\w.-]+)$/))) {
      const k = keyFor(m[2]!);
      if (m[1] !== 'plaintext' && m[1] !== 'wrapped') throw new HttpError(400, ['invalid path']);
      if (!k) throw new HttpError(400, ['encryption key not found']);
      const bits = input.bits === undefined ? 256 : Number(input.bits);
      if (bits !== 128 && bits !== 256 && bits !== 512) throw new HttpError(400, ['invalid bits value']);
      const dk = randomBytes(bits / 8);
      const ct = encrypt(k, dk, k.latestVersion);
      const data: Record<string, unknown> = { ciphertext: ct, key_version: k.latestVersion };
      if (m[1] === 'plaintext') data.plaintext = dk.toString('base64');
      return this.ok(data);
    }
    throw new HttpError(404, [`no handler for route "${path}". route entry not found.`]);
  }

  private health(): { status: number; body: unknown } {
    const body = {
      initialized: true,
      sealed: this.sealed,
      standby: false,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(Date.now() / 1000),
      version: '1.17.2',
      cluster_name: 'vault-cluster-fake',
      cluster_id: '00000000-0000-0000-0000-000000000000',
    };
    return { status: this.sealed ? 503 : 200, body };
  }

  private ok(data: unknown, extra: Record<string, unknown> = {}): { status: number; body: unknown } {
    return {
      status: 200,
      body: { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null, ...extra },
    };
  }

  private mountOf(ns: string, path: string): string | undefined {
    let best: string | undefined;
    for (const m of this.mounts) {
      const [mns, mpath] = m.split('|') as [string, string];
      if (mns === ns && path.startsWith(mpath + '/') && (!best || mpath.length > best.length)) best = mpath;
    }
    return best;
  }

  private bestRule(t: FakeToken, path: string): PathRule | undefined {
    let best: PathRule | undefined;
    for (const r of t.rules ?? []) {
      if (!ruleMatches(r.path, path)) continue;
      if (!best || r.path.length > best.path.length || (r.path.length === best.path.length && !r.path.endsWith('*'))) best = r;
    }
    return best;
  }

  private capabilitiesOf(t: FakeToken, path: string): string[] {
    if (t.rules === null) return ['root'];
    const r = this.bestRule(t, path);
    return !r || r.capabilities.includes('deny') ? ['deny'] : [...r.capabilities].sort();
  }

  private authorize(t: FakeToken, path: string, cap: Capability): void {
    if (t.rules === null) return;
    // The most specific rule wins, as in Vault's ACLs (longest prefix; exact beats glob).
    const best = this.bestRule(t, path);
    if (!best || best.capabilities.includes('deny') || !best.capabilities.includes(cap)) throw new HttpError(403, ['permission denied']);
  }

  private lookupSelf(t: FakeToken): Record<string, unknown> {
    const now = Date.now();
    const ttl = t.expiresAt === 0 ? 0 : Math.max(0, Math.floor((t.expiresAt - now) / 1000));
    return {
      accessor: t.accessor,
      creation_time: Math.floor(t.issuedAt / 1000),
      creation_ttl: t.creationTtl,
      display_name: t.rules === null ? 'root' : 'token-pgcmek',
      entity_id: '',
      expire_time: t.expiresAt === 0 ? null : new Date(t.expiresAt).toISOString(),
      explicit_max_ttl: t.explicitMaxTtl,
      id: t.id,
      issue_time: new Date(t.issuedAt).toISOString(),
      meta: null,
      num_uses: 0,
      orphan: false,
      path: t.rules === null ? 'auth/token/root' : 'auth/token/create',
      policies: t.policies,
      renewable: t.renewable,
      ttl,
      type: 'service',
    };
  }

  private renewSelf(t: FakeToken, input: Record<string, unknown>): { status: number; body: unknown } {
    if (!t.renewable || t.expiresAt === 0) throw new HttpError(400, ['lease is not renewable']);
    const now = Date.now();
    let inc = t.creationTtl;
    if (typeof input.increment === 'number') inc = input.increment;
    else if (typeof input.increment === 'string' && /^\d+s?$/.test(input.increment)) inc = parseInt(input.increment, 10);
    let expires = now + inc * 1000;
    const warnings: string[] = [];
    if (t.explicitMaxTtl > 0 && expires > t.issuedAt + t.explicitMaxTtl * 1000) {
      expires = t.issuedAt + t.explicitMaxTtl * 1000;
      warnings.push('TTL of "' + inc + 's" exceeded the effective max_ttl; TTL value is capped accordingly');
    }
    t.expiresAt = expires;
    t.renewals++;
    const ttl = Math.max(0, Math.floor((expires - now) / 1000));
    return this.ok(null, {
      warnings: warnings.length ? warnings : null,
      auth: {
        client_token: t.id,
        accessor: t.accessor,
        policies: t.policies,
        token_policies: t.policies,
        metadata: null,
        lease_duration: ttl,
        renewable: t.renewable,
        entity_id: '',
        token_type: 'service',
        orphan: false,
      },
    });
  }
}
