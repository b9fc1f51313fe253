// A minimal Vault HTTP API client on node:http(s): JSON in and out, the token
// and namespace headers, a CA bundle for TLS, keep-alive (a Transit call per
// DEK is on the hot path) and a deadline per request. It knows nothing of
// Transit; vault.ts says what to call. The token is only ever put in the
// X-Vault-Token header: it is not in any URL, error or log line.
import http from 'node:http';
import https from 'node:https';

export interface VaultHttpOptions {
  /** VIGILO_CMEK_VAULT_ADDR, e.g. https://vault.internal:8200 (a path prefix is kept). */
  addr: string;
  token: string;
  namespace?: string;
  /** PEM CA bundle used instead of the system roots. */
  ca?: Buffer;
  /** Whole-request deadline (connect + send + answer). */
  timeoutMs: number;
  /** Sockets kept open to Vault. */
  maxSockets?: number;
}

export interface VaultResponse {
  status: number;
  /** Parsed JSON body; {} for an empty body. */
  body: Record<string, unknown>;
}

/** Vault answered with a status outside 2xx. `errors` is Vault's `errors` array, if any. */
export class VaultHttpError extends Error {
  override readonly name = 'VaultHttpError';
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly errors: string[],
  ) {
    super(`Vault ${method} ${path} answered ${status}${errors.length ? `: ${errors.join('; ')}` : ''}`);
  }
}

/** No HTTP answer: connection refused/reset, DNS, TLS, or the deadline passed. */
export class VaultNetworkError extends Error {
  override readonly name = 'VaultNetworkError';
  constructor(
    readonly method: string,
    readonly path: string,
    /** ECONNREFUSED, ENOTFOUND, ETIMEDOUT, a TLS code (DEPTH_ZERO_SELF_SIGNED_CERT...), ... */
    readonly code: string,
    detail: string,
  ) {
    super(`Vault ${method} ${path}: ${detail} (${code})`);
  }
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS|ERR_SSL|EPROTO|HOSTNAME/;

export function isTlsCode(code: string): boolean {
  return TLS_CODES.test(code);
}

export class VaultHttp {
  readonly base: URL;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;
  private readonly headers: Record<string, string>;

  constructor(private readonly o: VaultHttpOptions) {
    this.base = new URL(o.addr.endsWith('/') ? o.addr : o.addr + '/');
    const tls = this.base.protocol === 'https:';
    this.mod = tls ? https : http;
    const agentOpts = { keepAlive: true, maxSockets: o.maxSockets ?? 32, ...(tls && o.ca ? { ca: o.ca } : {}) };
    this.agent = tls ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
    this.headers = { accept: 'application/json', 'x-vault-request': 'true' };
    if (o.namespace) this.headers['x-vault-namespace'] = o.namespace;
  }

  /**
   * GET/POST `/v1/<path>`. Resolves for 2xx, and for a 400 that carries
   * `data.batch_results` when `batch` is set (Vault's answer to a batch with a
   * failed item: the other items' results are in it). Otherwise rejects with
   * VaultHttpError or VaultNetworkError, which hold no body: a body may hold DEKs.
   */
  request(method: 'GET' | 'POST', path: string, body?: unknown, o: { auth?: boolean; batch?: boolean } = {}): Promise<VaultResponse> {
    const auth = o.auth ?? true;
    const url = new URL(`v1/${path}`, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    const headers: Record<string, string | number> = { ...this.headers };
    if (auth) headers['x-vault-token'] = this.o.token;
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    return new Promise<VaultResponse>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        payload?.fill(0);
        reject(e);
      };
      const req = this.mod.request(url, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => fail(netError(method, path, e)));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          // The request may have carried a DEK (encrypt): it has been sent, wipe it.
          payload?.fill(0);
          const raw = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          let parsed: Record<string, unknown> = {};
          if (raw.length) {
            try {
              parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
            } catch {
              parsed = {};
            }
          }
          // The body may hold a DEK (datakey, decrypt): wipe our copy of the bytes.
          raw.fill(0);
          for (const c of chunks) c.fill(0);
          const data = parsed.data as Record<string, unknown> | undefined;
          if ((status >= 200 && status < 300) || (o.batch && status === 400 && Array.isArray(data?.batch_results))) {
            resolve({ status, body: parsed });
          } else {
            const errors = Array.isArray(parsed.errors) ? parsed.errors.map(String) : [];
            reject(new VaultHttpError(method, path, status, errors));
          }
        });
      });
      const timer = setTimeout(() => {
        req.destroy();
        fail(new VaultNetworkError(method, path, 'ETIMEDOUT', `no answer within ${this.o.timeoutMs} ms`));
      }, this.o.timeoutMs);
      req.on('error', (e) => fail(netError(method, path, e)));
      if (payload) req.end(payload);
      else req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function netError(method: string, path: string, e: Error): VaultNetworkError {
  const code = (e as NodeJS.ErrnoException).code ?? (e.message === 'socket hang up' ? 'ECONNRESET' : 'ENETWORK');
  return new VaultNetworkError(method, path, code, e.message);
}
