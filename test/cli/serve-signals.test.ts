// Signal handling of `pgcmek serve`, against a recording stand-in for the listener
// (the real listener's own shutdown is the proxy's tests' business).
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { run } from './run.js';

const calls = vi.hoisted(() => ({
  started: [] as { config: unknown; keyring: unknown }[],
  closes: [] as (number | undefined)[],
  /** Resolves the pending close(); a second close() resolves at once. */
  finish: undefined as undefined | (() => void),
}));

vi.mock('../../src/proxy/server.js', () => ({
  startProxy: async (config: Config, deps: { keyring?: unknown }) => {
    calls.started.push({ config, keyring: deps.keyring });
    return {
      host: config.listen.host,
      port: 54321,
      close: (graceMs?: number) => {
        calls.closes.push(graceMs);
        if (calls.closes.length > 1) {
          calls.finish?.();
          return Promise.resolve();
        }
        return new Promise<void>((r) => (calls.finish = r));
      },
    };
  },
}));

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-signals-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function startServe(): Promise<{ signals: EventEmitter; done: ReturnType<typeof run> }> {
  const kek = join(dir, `kek-${Math.random()}.key`);
  await run(['keygen', '--out', kek]);
  const file = join(dir, `c-${Math.random()}.yaml`);
  writeFileSync(file, `shutdown_grace_seconds: 7\nkek: { local: { path: ${kek} } }\n`);
  const signals = new EventEmitter();
  const done = run(['serve', '--config', file], { signals });
  // Start-up loads the WASM SQL parser: allow for a busy machine.
  await vi.waitFor(() => expect(signals.listenerCount('SIGTERM')).toBe(1), { timeout: 20_000 });
  return { signals, done };
}

beforeEach(() => {
  calls.started.length = 0;
  calls.closes.length = 0;
  calls.finish = undefined;
});

describe('serve signals', () => {
  it('starts the proxy with the loaded config and a keyring, and logs the address', async () => {
    const { signals, done } = await startServe();
    expect(calls.started).toHaveLength(1);
    expect(calls.started[0].keyring).toBeInstanceOf(Keyring);
    expect((calls.started[0].config as Config).shutdownGraceSeconds).toBe(7);
    signals.emit('SIGINT');
    calls.finish?.();
    const r = await done;
    expect(r.stdout).toMatch(/"host":"127\.0\.0\.1","port":54321,.*"msg":"pgcmek ready"/);
  });

  it('SIGTERM closes with shutdown_grace_seconds', async () => {
    const { signals, done } = await startServe();
    signals.emit('SIGTERM');
    expect(calls.closes).toEqual([7000]);
    calls.finish?.();
    expect((await done).code).toBe(0);
  });

  it('SIGINT closes at once', async () => {
    const { signals, done } = await startServe();
    signals.emit('SIGINT');
    expect(calls.closes).toEqual([0]);
    calls.finish?.();
    expect((await done).code).toBe(0);
  });

  it('a second signal during the grace period closes at once', async () => {
    const { signals, done } = await startServe();
    signals.emit('SIGTERM');
    signals.emit('SIGTERM');
    expect(calls.closes).toEqual([7000, 0]);
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('second signal: closing open sessions now');
    expect(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGINT')).toBe(0);
  });
});
