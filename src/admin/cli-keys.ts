// The keys the admin CLI works with: the keyring from the config's KEK section
// and, when a backfill or rotation may touch searchable columns, their
// deterministic keys (src/searchable) over the same KEK backend instances.
import type { Db } from '../catalog/db.js';
import type { Config } from '../config/types.js';
import { createBackends } from '../crypto/kek/registry.js';
import { Keyring } from '../crypto/keyring.js';
import { log } from '../log.js';
import { SearchableKeys } from '../searchable/keys.js';
import { searchableColumnsOf } from '../searchable/types.js';
import type { AdminCommand } from './command.js';

export interface CliKeys {
  keyring: Keyring;
  searchable?: SearchableKeys;
  close(): Promise<void>;
}

export async function openKeys(config: Config, cmd: AdminCommand, db: Db): Promise<CliKeys> {
  const columns = searchableColumnsOf(config.encrypted);
  const needSearchable = columns.length > 0 && (cmd.kind === 'encrypt' || cmd.kind === 'rotate');
  if (!needSearchable) {
    const keyring = await Keyring.fromConfig(config.kek);
    return { keyring, close: () => keyring.close() };
  }
  // As Keyring.fromConfig does, keeping the backends: the searchable keys wrap their DEKs with the same ones.
  const { primary, readable } = await createBackends(config.kek);
  const all = [...new Set([primary, ...readable])];
  try {
    for (const b of all) await b.init();
  } catch (e) {
    await Promise.allSettled(all.map((b) => b.close?.()));
    throw e;
  }
  const keyring = new Keyring({ primary, readable, dek: config.kek.dek });
  try {
    const searchable = await SearchableKeys.load({ db, kek: { primary, readable }, columns, keyring, log: log() });
    return {
      keyring,
      searchable,
      close: async () => {
        await searchable.close();
        await keyring.close();
      },
    };
  } catch (e) {
    await keyring.close();
    throw e;
  }
}
