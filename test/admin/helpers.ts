// Shared setup for the admin tests: keyrings over in-memory local KEKs, a config
// naming the test tables, and row-count scaling (PGCMEK_TEST_SCALE).
import { randomBytes } from 'node:crypto';
import { executeAdminCommand, type AdminContext, type AdminResult } from '../../src/admin/executor.js';
import { parseAdminCommand } from '../../src/admin/parse.js';
import { AdminError } from '../../src/admin/errors.js';
import type { Db } from '../../src/catalog/db.js';
import { defaultConfig } from '../../src/config/load.js';
import type { ColumnPolicy, Config, TablePolicy } from '../../src/config/types.js';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';

/** Row counts scale with PGCMEK_TEST_SCALE (default 1: a quick suite; 50 gives the 100k-row runs). */
export const SCALE = Number(process.env.PGCMEK_TEST_SCALE ?? '1');
export const rows = (n: number) => Math.max(1, Math.round(n * SCALE));

export const DEK = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 1000, cacheTtlSeconds: 0 };

export const newKek = () => randomBytes(32);

/** A keyring whose primary is the first KEK; the rest stay readable. */
export function keyringOf(...keks: Buffer[]): Keyring {
  return new Keyring({ primary: LocalKekBackend.fromKeys(keks), readable: [], dek: DEK });
}

export const col = (column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy => ({
  column,
  searchable: false,
  onDecryptError: 'error',
  encryptEmpty: false,
  ...extra,
});

export function configOf(encrypted: TablePolicy[], adminRoles = ['postgres']): Config {
  const c = defaultConfig();
  return { ...c, encrypted, admin: { roles: adminRoles } };
}

export interface Runner {
  (text: string, extra?: Partial<AdminContext>): Promise<AdminResult>;
}

/** Runs `CMEK ...` text as the proxy would, as role postgres unless told otherwise. */
export function runnerFor(db: Db, config: Config, keyring: Keyring, notices: string[] = []): Runner {
  return async (text, extra = {}) => {
    const cmd = parseAdminCommand(text);
    if (cmd instanceof AdminError) throw cmd;
    return executeAdminCommand(cmd, {
      db,
      config,
      keyring,
      principal: { kind: 'role', name: 'postgres' },
      onNotice: (m) => notices.push(m),
      ...extra,
    });
  };
}

/** Result rows as objects keyed by column name. */
export function records(r: AdminResult): Record<string, string>[] {
  return r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));
}

export function plaintextOf(i: number): string {
  return `secret-${i}-${'x'.repeat(i % 7)}`;
}
