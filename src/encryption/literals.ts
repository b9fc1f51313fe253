// Literals of the simple protocol (and of Parse texts) bound for configured
// columns: each is encrypted (deterministically for a searchable column) and
// spliced back as a quoted literal, with any further edits (searchable
// comparisons widened to their candidates), leaving every other byte alone.
import { quoteLiteral, spliceLiterals } from '../sql/lexical.js';
import type { RewritePlan } from '../sql/types.js';
import { formatError, type BindContext } from './params.js';
import type { Edit } from './searchable-rewrite.js';
import type { MaybePromise } from './values.js';

/**
 * The text with its literals encrypted and `extra` applied; undefined when there
 * is nothing to change. `frameCode`: as a whole frontend message of that type (a Query).
 */
export function spliceEncryptedLiterals(bytes: Buffer, plan: RewritePlan, extra: Edit[], c: BindContext, frameCode?: number): MaybePromise<Buffer | undefined> {
  if (plan.literals.length === 0 && extra.length === 0) return undefined;
  const texts = plan.literals.map((l) => {
    const pt = Buffer.from(l.value, 'utf8');
    let r: MaybePromise<Buffer>;
    try {
      r = l.target.policy.searchable
        ? c.codec.encryptSearchable(pt, c.key(l.target))
        : c.codec.encrypt(pt, l.target.policy, c.shapeOf(l.target), false);
    } catch (e) {
      throw formatError(e, l.target);
    }
    return r instanceof Promise ? r.then((b) => b.toString('utf8'), (e: unknown) => Promise.reject(formatError(e, l.target))) : r.toString('utf8');
  });
  const build = (vals: string[]) =>
    spliceLiterals(
      bytes,
      plan.literals.length === 0 ? extra : [...plan.literals.map((l, i) => ({ start: l.start, end: l.end, text: quoteLiteral(vals[i]!) })), ...extra],
      frameCode,
    );
  return texts.some((t) => t instanceof Promise) ? Promise.all(texts).then(build) : build(texts as string[]);
}
