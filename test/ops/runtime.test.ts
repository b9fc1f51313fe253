// The service runtime behind `serve` (src/cli/reload.ts), without Postgres:
// generations swap on reload, open sessions pin theirs and its keyring is closed
// only when the last one ends, failed reloads change nothing, and keys that need
// a restart are reported and kept. Plus the pieces metrics are read from.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { defaultConfig } from '../../src/config/load.js';
import type { Config, TablePolicy } from '../../src/config/types.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { ProxyRuntime } from '../../src/cli/reload.js';
import { createLogger } from '../../src/log.js';
import type { SessionInfo } from '../../src/proxy/interceptor.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-runtime-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const info: SessionInfo = { id: 1, user: 'app', database: 'app', protocolMinor: 0, clientTls: false };
const table = (name: string, column: string): TablePolicy => ({
  schema: 'public',
  table: name,
  columns: [{ column, searchable: false, onDecryptError: 'error', encryptEmpty: false }],
});

function config(over: Partial<Config> = {}, kek = join(dir, 'kek.key')): Config {
  const c = defaultConfig();
  return { ...c, kek: { ...c.kek, local: { path: kek, previous: [] } }, encrypted: [table('a', 'v')], ...over };
}

generateKekFile(join(dir, 'kek.key'));
generateKekFile(join(dir, 'kek2.key'));

function quietLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

describe('ProxyRuntime', () => {
  it('a reload gives new sessions the new map; an open session keeps its generation until it ends', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    try {
      const first = rt.layer;
      const oldKeyring = rt.keyring;
      const closeOld = vi.spyOn(oldKeyring, 'close');
      const open = rt.interceptor(info)!;
      expect(open).toBeDefined();

      expect(await rt.reload(config({ encrypted: [table('a', 'v'), table('b', 'v')] }, join(dir, 'kek2.key')))).toEqual([]);
      expect(rt.generation).toBe(2);
      expect(rt.layer).not.toBe(first);
      expect(rt.layer.tables.map((t) => t.table)).toEqual(['a', 'b']);
      expect(rt.keyring).not.toBe(oldKeyring);
      // The open session still holds generation 1: its keyring stays open.
      expect(closeOld).not.toHaveBeenCalled();
      open.close?.();
      open.close?.(); // once only
      expect(closeOld).toHaveBeenCalledTimes(1);
    } finally {
      await rt.close();
    }
  });

  it('a generation with no session left is closed at once; close() closes the current one', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    const k1 = vi.spyOn(rt.keyring, 'close');
    await rt.reload(config());
    expect(k1).toHaveBeenCalledTimes(1);
    const k2 = vi.spyOn(rt.keyring, 'close');
    await rt.close();
    expect(k2).toHaveBeenCalledTimes(1);
  });

  it('a KEK that does not load rejects the reload and changes nothing', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    try {
      const layer = rt.layer;
      await expect(rt.reload(config({}, join(dir, 'missing.key')))).rejects.toThrow(/missing\.key does not exist/);
      expect(rt.layer).toBe(layer);
      expect(rt.generation).toBe(1);
    } finally {
      await rt.close();
    }
  });

  it('keys the listener was started with are reported and kept; the log level applies', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    try {
      const next = config({ listen: { host: '127.0.0.1', port: 7000 }, upstream: { host: 'db', port: 5432, tls: 'require' }, log: { level: 'debug' }, shutdownGraceSeconds: 5 });
      expect(await rt.reload(next)).toEqual(['listen', 'upstream']);
      expect(rt.config.listen).toEqual(defaultConfig().listen);
      expect(rt.config.upstream).toEqual(defaultConfig().upstream);
      expect(rt.config.shutdownGraceSeconds).toBe(5);
      expect(logger.level).toBe('debug');
    } finally {
      await rt.close();
    }
  });

  it('KEK counters never go down across reloads', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    try {
      await rt.keyring.encrypt('x');
      const before = rt.kekTotals().keyring.generates;
      expect(before).toBeGreaterThanOrEqual(1);
      await rt.reload(config());
      expect(rt.kekTotals().keyring.generates).toBe(before);
      await rt.keyring.encrypt('y');
      expect(rt.kekTotals().keyring.generates).toBe(before + 1);
    } finally {
      await rt.close();
    }
  });

  it('counts refusals reported by the layer, and readiness names the primary KEK', async () => {
    const { logger } = quietLogger();
    const rt = await ProxyRuntime.open(config(), logger);
    try {
      rt.layer.opts.observer?.refused?.({ code: '0A000', reason: 'unsupported_operator', message: 'm' });
      expect([...rt.stats.refusals]).toEqual([['unsupported_operator|0A000', 1]]);
      expect(rt.kekReady()).toEqual({ ok: true, reason: `primary KEK ${rt.keyring.primaryLabel()}` });
    } finally {
      await rt.close();
    }
  });
});
