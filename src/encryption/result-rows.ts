// Result rows of one session: each DataRow whose RowDescription (table OID +
// attnum) maps to a configured column is decrypted by a row plan made once per
// result shape; a value that cannot be decrypted replaces the row with an
// ErrorResponse and the rest of the result is dropped up to ReadyForQuery.
import type { CMEKDecryptionError } from '../crypto/errors.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import { RemoteKekError } from '../crypto/kek/retry.js';
import { FORWARD, type InterceptContext, type Verdict } from '../proxy/interceptor.js';
import type { Pending, ResultShape } from '../proxy/state-types.js';
import type { EncryptionLayer } from './layer.js';
import { planRows, decryptDataRow, RowDecryptError, type RowPlan, type FieldPlan, type OnCiphertextKept } from './rows.js';
import { errorFrame, SQLSTATE_DECRYPT_FAILED } from './refusal.js';
import type { SessionCatalog } from './session-catalog.js';

/** Distinct result shapes a session keeps row plans for (a fresh start beyond it). */
const MAX_ROW_PLANS = 256;

/** The same fields (origin, type) in the same formats: what a row plan depends on, as planFor's signature. */
function sameColumns(a: ResultShape, b: ResultShape): boolean {
  const n = a.fields.length;
  if (n !== b.fields.length) return false;
  for (let i = 0; i < n; i++) {
    const x = a.fields[i]!;
    const y = b.fields[i]!;
    if (x.tableOid !== y.tableOid || x.columnAttr !== y.columnAttr || x.typeOid !== y.typeOid || a.formats[i] !== b.formats[i]) return false;
  }
  return true;
}

export class ResultRows {
  /** A DataRow failed to decrypt: drop the server's replies up to ReadyForQuery. */
  discarding = false;
  /** The shape of the rows being returned now and its plan (a result's rows come one after another). */
  private lastShape: ResultShape | undefined;
  private lastPlan: RowPlan | null = null;
  /**
   * Row plans by what they depend on (each field's origin, type and format),
   * for the catalog they were made with: a prepared statement run again gets a
   * new shape object per execution (its portal is described anew) but the same plan.
   */
  private readonly plansBySignature = new Map<string, RowPlan | null>();
  private plannedWith: ResolvedCatalog | undefined;
  /** Logs a value returned as stored (`on_decrypt_error: ciphertext`). */
  private kept: OnCiphertextKept | undefined;
  private keptCtx: InterceptContext | undefined;

  constructor(
    private readonly layer: EncryptionLayer,
    private readonly catalog: SessionCatalog,
  ) {}

  /**
   * The rows answering `reply` need no look: their result's plan, made at its
   * first row (which did come through dataRow), decrypts nothing, and no failed
   * result is being discarded.
   */
  passes(reply: Pending | undefined): boolean {
    const shape = reply?.shape;
    return shape !== undefined && shape === this.lastShape && this.lastPlan === null && !this.discarding && this.catalog.forShapes() === this.plannedWith;
  }

  dataRow(frame: Buffer, reply: Pending | undefined, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const shape = reply?.shape;
    if (!shape) return FORWARD;
    let plan = this.lastPlan;
    if (shape !== this.lastShape) {
      // A statement executed again brings a new shape object with the same columns: keep its plan.
      if (this.lastShape === undefined || !sameColumns(shape, this.lastShape) || this.catalog.forShapes() !== this.plannedWith) plan = this.planFor(shape);
      this.lastShape = shape;
      this.lastPlan = plan;
    }
    if (!plan) return FORWARD;
    if (this.keptCtx !== ctx) {
      // Made once per session, not per row.
      this.keptCtx = ctx;
      this.kept = (f: FieldPlan, e: CMEKDecryptionError) =>
        ctx.logger.warn({ table: f.table, column: f.column, reason: e.reason, kekId: e.kekId }, 'value not decrypted; returned as stored (on_decrypt_error: ciphertext)');
    }
    try {
      const r = decryptDataRow(frame, plan, this.layer.codec, this.kept!, ctx.toClient);
      return r instanceof Promise ? r.catch((e: unknown) => this.failed(e, ctx)) : r;
    } catch (e) {
      return this.failed(e, ctx);
    }
  }

  private planFor(shape: ResultShape): RowPlan | null {
    const catalog = this.catalog.forShapes();
    if (catalog !== this.plannedWith || this.plansBySignature.size >= MAX_ROW_PLANS) {
      this.plansBySignature.clear();
      this.plannedWith = catalog;
    }
    let sig = '';
    for (let i = 0; i < shape.fields.length; i++) {
      const f = shape.fields[i]!;
      sig += `${f.tableOid}.${f.columnAttr}.${f.typeOid}.${shape.formats[i]},`;
    }
    let plan = this.plansBySignature.get(sig);
    if (plan === undefined) {
      plan = planRows(shape, catalog, this.layer.decryptUnmapped);
      this.plansBySignature.set(sig, plan);
    }
    return plan;
  }

  /** Replaces the row with an ErrorResponse and drops the rest of the result (up to ReadyForQuery). */
  failed(e: unknown, ctx: InterceptContext): Verdict {
    this.discarding = true;
    if (!(e instanceof RowDecryptError)) {
      // Not a bad value: the KEK backend (or something else) failed. Never fatal to the session.
      const msg = e instanceof Error ? e.message : String(e);
      ctx.logger.warn({ reason: msg }, 'decryption failed: result discarded');
      return errorFrame({ code: e instanceof RemoteKekError ? '58030' : SQLSTATE_DECRYPT_FAILED, message: `CMEKDecryptionError: ${msg}` });
    }
    ctx.logger.warn({ table: e.field.table, column: e.field.column, reason: e.cause.reason, kekId: e.cause.kekId }, 'CMEKDecryptionError: result discarded');
    return errorFrame({
      code: SQLSTATE_DECRYPT_FAILED,
      message: `CMEKDecryptionError: cannot decrypt ${e.field.label}: ${e.cause.message}`,
      hint: e.cause.reason === 'unknown_kek' ? 'load the KEK that wrapped this value (kek.local.previous or the right backend), then retry' : undefined,
      table: e.field.table,
      column: e.field.column,
    });
  }
}
