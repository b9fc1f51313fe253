// COPY through the proxy: which COPY a CopyIn/CopyOutResponse belongs to (the
// plans of each forwarded Query, in statement order), and the streaming
// encryptor/decryptor for its data (searchable columns: deterministically, with
// the column's key). Fails closed: a COPY FROM STDIN into an
// encrypted table that cannot be encrypted is turned into a CopyFail, so the
// server rejects it rather than store plaintext.
import type { ColumnPolicy } from '../config/types.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { Logger } from '../log.js';
import { BackendCode as B, FrontendCode as F } from '../protocol/codes.js';
import { COPY_DONE, encodeCopyData, encodeCopyFail } from '../protocol/frontend/copy.js';
import type { Verdict } from '../proxy/interceptor.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import type { ColumnTarget, CopyFormatOptions, CopyInPlan, CopyOutPlan, CopyPlan } from '../sql/types.js';
import type { CopyFormat } from './copy-format.js';
import { CopyInEncryptor } from './copy-in.js';
import { CopyOutDecryptor } from './copy-out.js';
import { formatError } from './params.js';
import { RowDecryptError } from './rows.js';
import type { MaybePromise, ValueCodec, ValueShape } from './values.js';

const REFUSE = 'refuse' as const;

/** The analysis reports COPY options with the same names the stream rewriters take. */
function toCopyFormat(p: CopyFormatOptions): CopyFormat {
  return p;
}

/** CopyData frames for each output chunk (empty output = drop the frame). */
function frames(chunks: Buffer[], tail?: Buffer): Verdict {
  const out = chunks.filter((c) => c.length > 0).map((c) => encodeCopyData(c));
  if (tail) out.push(tail);
  return out.length === 0 ? null : out.length === 1 ? out[0]! : Buffer.concat(out);
}

function catching(v: Verdict | Promise<Verdict>, f: (e: unknown) => Verdict): Verdict | Promise<Verdict> {
  return v instanceof Promise ? v.catch(f) : v;
}

function then<T>(v: MaybePromise<T>, f: (x: T) => Verdict): Verdict | Promise<Verdict> {
  return v instanceof Promise ? v.then(f) : f(v);
}

export class CopyStreams {
  /** Per forwarded Query (oldest first): its COPY … STDIN/STDOUT plans still to start. */
  private readonly queries: CopyPlan[][] = [];
  private copyIn: CopyInEncryptor | typeof REFUSE | undefined;
  private refuseReason = '';
  private copyOut: CopyOutDecryptor | undefined;

  constructor(
    private readonly codec: ValueCodec,
    private readonly shapeOf: (t: ColumnTarget) => ValueShape,
    private readonly logger: Logger,
    /** A searchable column's key (deterministic encryption); throws when it is not loaded. */
    private readonly searchableKey: (t: ColumnTarget) => SearchableColumnKey,
  ) {}

  queryForwarded(plans: readonly CopyPlan[]): void {
    this.queries.push(plans.filter((p) => p.viaClient));
  }

  queryDone(): void {
    this.queries.shift();
  }

  reset(): void {
    this.copyIn = undefined;
    this.copyOut = undefined;
  }

  private next(): CopyPlan | undefined {
    return this.queries[0]?.shift();
  }

  serverFrame(code: number, frame: Buffer): Verdict | Promise<Verdict> {
    switch (code) {
      case B.CopyInResponse: {
        const plan = this.next();
        if (plan && plan.direction !== 'in') this.refuseIn('pgcmek: could not match this COPY to its statement; refused');
        else if (plan) this.startIn(plan);
        return undefined;
      }
      case B.CopyOutResponse: {
        const plan = this.next();
        if (plan?.direction === 'out') this.startOut(plan);
        return undefined;
      }
      case B.CopyData:
        if (!this.copyOut) return undefined;
        return then(this.copyOut.push(frame.subarray(5)), (c) => frames(c));
      case B.CopyDone: {
        const out = this.copyOut;
        this.copyOut = undefined;
        if (!out) return undefined;
        return then(out.end(), (c) => frames(c, frame));
      }
      default:
        return undefined;
    }
  }

  clientFrame(code: number, frame: Buffer): Verdict | Promise<Verdict> {
    const ci = this.copyIn;
    if (ci === undefined) return undefined;
    if (code === F.CopyFail) {
      this.copyIn = undefined;
      return undefined;
    }
    if (ci === REFUSE) {
      if (code === F.CopyData) return null;
      this.copyIn = undefined;
      return encodeCopyFail(this.refuseReason);
    }
    const fail = (e: unknown): Verdict => this.failIn(e, code === F.CopyDone);
    try {
      if (code === F.CopyData) return catching(then(ci.push(frame.subarray(5)), (c) => frames(c)), fail);
      this.copyIn = undefined;
      return catching(then(ci.end(), (c) => frames(c, COPY_DONE)), fail);
    } catch (e) {
      return fail(e);
    }
  }

  /** Drops the rest of the data; the client's CopyDone becomes a CopyFail (now, if this was it). */
  private failIn(e: unknown, atDone: boolean): Verdict {
    const msg = (e instanceof Error ? e.message : String(e)).replace(/^pgcmek: /, '');
    this.logger.warn({ reason: msg }, 'COPY FROM STDIN refused: its data cannot be encrypted');
    const reason = `pgcmek: COPY data cannot be encrypted: ${msg}`;
    if (atDone) {
      this.copyIn = undefined;
      return encodeCopyFail(reason);
    }
    this.refuseIn(reason);
    return null;
  }

  private refuseIn(reason: string): void {
    this.copyIn = REFUSE;
    this.refuseReason = reason;
  }

  private startIn(plan: CopyInPlan): void {
    const fields: number[] = [];
    const policies = new Map<number, { target: ColumnTarget; policy: ColumnPolicy; shape: ValueShape; key?: SearchableColumnKey }>();
    try {
      plan.fields.forEach((t, i) => {
        if (!t) return;
        fields.push(i);
        policies.set(i, { target: t, policy: t.policy, shape: this.shapeOf(t), ...(t.policy.searchable && { key: this.searchableKey(t) }) });
      });
    } catch (e) {
      return this.refuseIn(`pgcmek: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (fields.length === 0) return;
    if (plan.format === 'binary') return this.refuseIn('pgcmek: binary COPY into an encrypted table is not supported; use text or CSV');
    this.copyIn = new CopyInEncryptor({
      format: toCopyFormat(plan),
      fields,
      encryptEmpty: fields.filter((i) => policies.get(i)!.policy.encryptEmpty),
      transform: (v, i) => {
        const p = policies.get(i)!;
        if (p.key) return this.codec.encryptSearchable(Buffer.from(v), p.key);
        // A value the column cannot hold (malformed JSON): the refusal names the column.
        try {
          const r = this.codec.encrypt(Buffer.from(v), p.policy, p.shape, false);
          return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(formatError(e, p.target))) : r;
        } catch (e) {
          throw formatError(e, p.target);
        }
      },
    });
  }

  private startOut(plan: CopyOutPlan): void {
    if (!plan.fields || plan.format === 'binary') return;
    const targets = new Map<number, ColumnTarget>();
    const unknown = new Set<number>();
    plan.fields.forEach((f, i) => {
      if (f.kind === 'encrypted') targets.set(i, f.target);
      else if (f.kind === 'unknown') unknown.add(i);
    });
    if (targets.size === 0 && unknown.size === 0) return;
    this.copyOut = new CopyOutDecryptor({
      format: toCopyFormat(plan),
      fields: [...targets.keys(), ...unknown],
      transform: (v, i) => {
        const t = targets.get(i);
        if (!t) {
          // Unknown origin: decrypt a valid envelope, leave anything else alone.
          try {
            const r = this.codec.decryptText(Buffer.from(v));
            return r instanceof Promise ? r.catch(() => v) : r;
          } catch {
            return v;
          }
        }
        const onErr = (e: unknown): Buffer => {
          if (!(e instanceof CMEKDecryptionError)) throw e;
          if (t.policy.onDecryptError === 'ciphertext') return v;
          throw new RowDecryptError(
            { index: i, policy: t.policy, shape: this.shapeOf(t), binary: false, label: `${t.schema}.${t.table}.${t.column}`, table: `${t.schema}.${t.table}`, column: t.column },
            e,
          );
        };
        try {
          const r = this.codec.decrypt(Buffer.from(v), t.policy, this.shapeOf(t), false);
          return r instanceof Promise ? r.catch(onErr) : r;
        } catch (e) {
          return onErr(e);
        }
      },
    });
  }
}
