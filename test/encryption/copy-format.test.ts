import { describe, expect, it } from 'vitest';
import { CopyDataError, isUtf8EncodingName, resolveCopyFormat, type CopyFormat } from '../../src/encryption/copy-format.js';
import type { CopyFormatOptions } from '../../src/sql/types.js';

// The SQL layer's COPY plan carries its options under the same names: it can be passed as is.
const planIsAFormat = (p: CopyFormatOptions): CopyFormat => p;

describe('resolveCopyFormat', () => {
  it('accepts the options of a SQL-layer COPY plan', () => {
    const plan: CopyFormatOptions = {
      format: 'csv', delimiter: ';', null: 'NA', quote: "'", escape: '\\', header: 'match',
      forceNotNull: [1], forceNull: 'all', forceQuote: [],
    };
    const f = resolveCopyFormat(planIsAFormat(plan));
    expect([f.delim, f.quote, f.escape, f.nullMarker.toString(), f.forceNull(9), f.forceNotNull(1)]).toEqual([59, 39, 92, 'NA', true, true]);
  });

  it('applies the Postgres defaults per format', () => {
    const t = resolveCopyFormat({ format: 'text' });
    expect([t.csv, t.delim, t.quote, t.escape, t.nullMarker.toString(), t.header]).toEqual([false, 9, -1, -1, '\\N', false]);
    const c = resolveCopyFormat({ format: 'csv' });
    expect([c.csv, c.delim, c.quote, c.escape, c.nullMarker.toString(), c.csvEndMarker]).toEqual([true, 44, 34, -1, '', true]);
    const e = resolveCopyFormat({ format: 'csv', quote: "'", escape: '\\', header: 'match' });
    expect([e.quote, e.escape, e.header]).toEqual([39, 92, true]);
    // ESCAPE defaults to QUOTE, and an escape equal to the quote is no separate escape.
    expect(resolveCopyFormat({ format: 'csv', quote: "'" }).escape).toBe(-1);
  });

  it('maps FORCE_NULL / FORCE_NOT_NULL / FORCE_QUOTE by field index, CSV only', () => {
    const c = resolveCopyFormat({ format: 'csv', forceNull: [1], forceNotNull: 'all', forceQuote: [2] });
    expect([c.forceNull(0), c.forceNull(1), c.forceNotNull(7), c.forceQuote(2), c.forceQuote(1)]).toEqual([false, true, true, true, false]);
    const t = resolveCopyFormat({ format: 'text', forceNull: [1] });
    expect(t.forceNull(1)).toBe(false);
  });

  it('refuses options it cannot honour, with a SQLSTATE', () => {
    const bad: CopyFormat[] = [
      { format: 'text', delimiter: '||' },
      { format: 'text', delimiter: 'é' },
      { format: 'csv', quote: '\n' },
      { format: 'text', null: 'a\nb' },
      { format: 'text', encoding: 'LATIN1' },
      { format: 'binary' },
    ];
    for (const f of bad) {
      const e = (() => {
        try {
          resolveCopyFormat(f);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(CopyDataError);
      expect((e as CopyDataError).sqlState).toBe('0A000');
    }
    expect(isUtf8EncodingName('utf-8')).toBe(true);
    expect(isUtf8EncodingName('UNICODE')).toBe(true);
    expect(resolveCopyFormat({ format: 'text', encoding: 'UTF_8' }).csv).toBe(false);
  });
});
