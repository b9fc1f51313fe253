// `pgcmek serve` in-process (main() with in-memory streams and a signal emitter),
// in front of the suite's Postgres, for the operations tests: every log line it
// writes is kept, and the metrics endpoint's address is read from its ready line.
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { run, type Run } from '../cli/run.js';

export interface Served {
  port: number;
  /** host:port of /metrics, when the config has a metrics section. */
  metrics?: { host: string; port: number };
  dir: string;
  kekPath: string;
  /** Everything written to stdout (JSON log lines) and stderr so far. */
  stdout(): string;
  stderr(): string;
  signal(name: 'SIGTERM' | 'SIGINT' | 'SIGHUP'): void;
  stop(): Promise<Run>;
}

/** The upstream lines of a config for the suite's Postgres. */
export function upstreamYaml(): string {
  const up = new URL(inject('pgUrl'));
  return `upstream: { host: ${up.hostname}, port: ${up.port}, tls: disable }`;
}

/**
 * Starts serve with `yaml` (listen, upstream and a fresh local KEK are added
 * unless the yaml sets them: pass `kek:` yourself to use another). `{{kek}}` in
 * the yaml is replaced by the generated KEK path.
 */
export async function serveInProcess(yaml: string, env: Record<string, string> = {}): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-ops-'));
  const kekPath = join(dir, 'kek.key');
  generateKekFile(kekPath);
  const lines = [yaml.replaceAll('{{kek}}', kekPath)];
  if (!/^listen:/m.test(yaml)) lines.push('listen: { host: 127.0.0.1, port: 0 }');
  if (!/^upstream:/m.test(yaml)) lines.push(upstreamYaml());
  if (!/^kek:/m.test(yaml)) lines.push(`kek: { backend: local, local: { path: ${kekPath} } }`);
  if (!/^shutdown_grace_seconds:/m.test(yaml)) lines.push('shutdown_grace_seconds: 1');
  const file = join(dir, 'pgcmek.yaml');
  writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
  const signals = new EventEmitter();
  let out = '';
  let onReady: (l: { port: number; metrics?: string }) => void;
  const ready = new Promise<{ port: number; metrics?: string }>((r) => (onReady = r));
  const done = run(['serve', '--config', file], {
    env,
    signals,
    onStdout: (t) => {
      out += t;
      const line = out.split('\n').find((l) => l.includes('"pgcmek ready"'));
      if (line) onReady(JSON.parse(line) as { port: number; metrics?: string });
    },
  });
  // The ready line is logged at info: a config with a quieter log level never shows it.
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`serve not ready after 30 s (log level below info?):\n${out}`)), 30_000).unref());
  const r = await Promise.race([ready, timeout, done.then((x) => Promise.reject(new Error(`serve exited (${x.code}): ${x.stderr}\n${out}`)))]);
  let err = '';
  const [mh, mp] = r.metrics?.split(':') ?? [];
  return {
    port: r.port,
    ...(r.metrics && { metrics: { host: mh!, port: Number(mp) } }),
    dir,
    kekPath,
    stdout: () => out,
    stderr: () => err,
    signal: (name) => signals.emit(name),
    stop: async () => {
      signals.emit('SIGINT');
      const x = await done;
      err = x.stderr;
      rmSync(dir, { recursive: true, force: true });
      return x;
    },
  };
}

export interface HttpReply {
  status: number;
  type: string;
  body: string;
}

export function httpGet(at: { host: string; port: number }, path: string, method = 'GET'): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: at.host, port: at.port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** One sample of a Prometheus text exposition: `name{a="b"} 3` → 3; undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}
