// Shared setup for the searchable-column tests: a "replica" is what one proxy
// process holds — its own connection, local KEKs, a keyring and SearchableKeys.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import type { KekBackend } from '../../src/crypto/kek/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createLogger } from '../../src/log.js';
import { SearchableKeys, type SearchableKeysOptions } from '../../src/searchable/keys.js';
import type { SearchableColumn } from '../../src/searchable/types.js';

export const DEK_POLICY = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 1000, cacheTtlSeconds: 0 };
export const quiet = createLogger('silent');
export const newKek = () => randomBytes(32);

export const column = (table: string, col: string, extra: Partial<SearchableColumn> = {}): SearchableColumn => ({
  schema: 'public',
  table,
  column: col,
  encryptEmpty: false,
  ...extra,
});

export interface Replica {
  keys: SearchableKeys;
  keyring: Keyring;
  backend: KekBackend;
  client: pg.Client;
  close(): Promise<void>;
}

/** One proxy process: keks[0] is its primary KEK, the rest stay readable. */
export async function replica(
  url: string,
  keks: Buffer[] | KekBackend,
  columns: SearchableColumn[],
  opts: Partial<SearchableKeysOptions> = {},
): Promise<Replica> {
  const backend = Array.isArray(keks) ? LocalKekBackend.fromKeys(keks) : keks;
  const keyring = new Keyring({ primary: backend, readable: [], dek: DEK_POLICY });
  const client = new pg.Client(url);
  await client.connect();
  try {
    const keys = await SearchableKeys.load({ db: client, kek: { primary: backend, readable: [] }, columns, keyring, log: quiet, ...opts });
    return {
      keys,
      keyring,
      backend,
      client,
      close: async () => {
        await keys.close();
        await keyring.close();
        await client.end();
      },
    };
  } catch (e) {
    await client.end();
    throw e;
  }
}

export const tokenOf = (v: Buffer | string) => v.toString().slice(v.toString().lastIndexOf('|') + 1);
export const headerOf = (v: Buffer | string) => v.toString().slice(0, v.toString().lastIndexOf('|') + 1);
export const buf = (s: string) => Buffer.from(s, 'utf8');
/** A high-entropy value like the token hashes apps look up. */
export const tokenHash = (i: number) => `sha256:${i.toString(16).padStart(8, '0')}${randomBytes(28).toString('hex')}`;
