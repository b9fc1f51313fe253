// `pgcmek serve` with the real listener (no Postgres needed: nothing connects upstream).
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeCryptoStatus } from '../../src/crypto/native.js';
import { run } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-serve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function config(listenPort: number): Promise<string> {
  const kek = join(dir, `kek-${listenPort}-${Date.now()}.key`);
  expect((await run(['keygen', '--out', kek])).code).toBe(0);
  const file = join(dir, `config-${listenPort}-${Date.now()}.yaml`);
  writeFileSync(file, `listen: { host: 127.0.0.1, port: ${listenPort} }\nupstream: { port: 1 }\nshutdown_grace_seconds: 1\nkek: { local: { path: ${kek} } }\nlog: { level: info }\n`);
  return file;
}

describe('serve', () => {
  it('logs the bound address, accepts connections, and exits 0 on SIGTERM', async () => {
    const signals = new EventEmitter();
    const file = await config(0);
    let ready: (line: { port: number; host: string }) => void;
    const readyLine = new Promise<{ port: number; host: string }>((r) => (ready = r));
    let buffered = '';
    const done = run(['serve', '--config', file], {
      signals,
      onStdout: (text) => {
        buffered += text;
        for (const l of buffered.split('\n')) {
          if (l.includes('"pgcmek ready"')) ready(JSON.parse(l) as { port: number; host: string });
        }
      },
    });
    const line = await readyLine;
    expect(line.host).toBe('127.0.0.1');
    expect(line.port).toBeGreaterThan(0);
    // Which crypto path runs: the native addon when built (CI requires it), else why not.
    expect((line as { crypto?: string }).crypto).toBe(nativeCryptoStatus().detail);
    await new Promise<void>((resolve, reject) => {
      const s = connect(line.port, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
    expect(signals.listenerCount('SIGTERM')).toBe(1);
    signals.emit('SIGTERM');
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const logs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; signal?: string; graceSeconds?: number });
    expect(logs.find((l) => l.msg === 'shutting down')).toMatchObject({ signal: 'SIGTERM', graceSeconds: 1 });
    expect(logs.at(-1)?.msg).toBe('pgcmek stopped');
    expect(signals.listenerCount('SIGTERM')).toBe(0);
    expect(signals.listenerCount('SIGINT')).toBe(0);
    await expect(
      new Promise((resolve, reject) => {
        const s = connect(line.port, '127.0.0.1', () => reject(new Error('still listening')));
        s.on('error', resolve);
      }),
    ).resolves.toBeTruthy();
  });

  it('a port already in use: exit 1, one line with the fix', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as AddressInfo).port;
    try {
      const r = await run(['serve', '--config', await config(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^pgcmek serve: .*EADDRINUSE.*change listen\.port\)\n$/);
    } finally {
      busy.close();
    }
  });

  it('a config problem stops it before it listens', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen: { port: 99999 }\n');
    const r = await run(['serve', '--config', file], { env: { VIGILO_CMEK_LOCAL_KEK_PATH: '/nonexistent' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`pgcmek serve: ${file}:1: listen.port: expected an integer from 0 to 65535, got 99999\n`);
  });

  it('a missing KEK file stops it before it listens', async () => {
    const file = join(dir, 'nokek.yaml');
    writeFileSync(file, `kek: { local: { path: ${join(dir, 'absent.key')} } }\n`);
    const r = await run(['serve', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgcmek serve: KekConfigError: local KEK file .*absent\.key does not exist: create one with `pgcmek keygen --out .*`\n$/);
  });
});
