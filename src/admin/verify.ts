// CMEK VERIFY: decrypts every envelope of a column and reports how many
// decrypt, and the keys of the rows that do not (with the reason, never the
// value). Reads only: walks the rows holding envelopes like the rewrites do.
import type { Db } from '../catalog/db.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { Keyring } from '../crypto/keyring.js';
import { JsonPathError } from './json-paths.js';
import { qualified, type LeafPlan } from './plan.js';
import { ProgressMeter, type ProgressFn } from './progress.js';
import { failureReason, type RowFailure } from './rewrite.js';
import { formatKey, scanBatches } from './scan.js';
import { encryptedPredicate } from './sql.js';
import { envelopesIn } from './transforms.js';

export interface VerifyStats {
  rows: number;
  values: number;
  ok: number;
  failed: number;
  failures: RowFailure[];
  interrupted: boolean;
  seconds: number;
}

export interface VerifyOptions {
  batch: number;
  label: string;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  maxFailures?: number;
}

export async function verifyLeaf(db: Db, p: LeafPlan, keyring: Keyring, opts: VerifyOptions): Promise<VerifyStats> {
  const st: VerifyStats = { rows: 0, values: 0, ok: 0, failed: 0, failures: [], interrupted: false, seconds: 0 };
  const max = opts.maxFailures ?? 100;
  const filter = encryptedPredicate(p);
  const { rows } = await db.query(`SELECT pg_catalog.count(*)::int8::text AS n FROM ONLY ${qualified(p.schema, p.table)} AS t WHERE ${filter}`);
  const meter = new ProgressMeter(opts.label, Number(rows[0].n), opts.onProgress);
  for await (const batch of scanBatches(db, p, filter, opts.batch)) {
    if (opts.signal?.aborted) {
      st.interrupted = true;
      break;
    }
    for (const row of batch) {
      st.rows++;
      let failure: unknown;
      try {
        for (const env of envelopesIn(p, row.value)) {
          st.values++;
          try {
            await keyring.decrypt(env);
            st.ok++;
          } catch (err) {
            if (!(err instanceof CMEKDecryptionError)) throw err;
            st.failed++;
            failure ??= err;
          }
        }
      } catch (err) {
        if (!(err instanceof JsonPathError)) throw err;
        st.failed++;
        failure = err;
      }
      if (failure && st.failures.length < max) st.failures.push({ key: formatKey(p.key, row.key), reason: failureReason(failure) });
    }
    meter.add(batch.length);
  }
  meter.finish();
  st.seconds = meter.elapsedSeconds;
  return st;
}
