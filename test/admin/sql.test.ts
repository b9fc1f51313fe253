import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatTable } from '../../src/admin/cli-output.js';
import { envelopePrefix } from '../../src/admin/sql.js';

/** What a real envelope's text starts with: cmek:v1: + base64url(header | wrapped bytes). */
const envelopeStart = (header: Buffer, wrapped: Buffer) => 'cmek:v1:' + Buffer.concat([header, wrapped]).toString('base64url');

function matches(p: { prefix: string; next: string[] }, text: string): boolean {
  return text.startsWith(p.prefix) && (p.next.length === 0 || p.next.includes(text[p.prefix.length]));
}

describe('envelopePrefix (rotation filter)', () => {
  it('matches every envelope of a header and none of a header that differs in any bit', () => {
    for (const len of [4, 5, 6, 10, 11, 12, 40, 41]) {
      for (let round = 0; round < 30; round++) {
        const header = randomBytes(len);
        const p = envelopePrefix(header);
        for (let i = 0; i < 20; i++) expect(matches(p, envelopeStart(header, randomBytes(48)))).toBe(true);
        // Flip each bit of the header in turn: never a match.
        for (let bit = 0; bit < len * 8; bit++) {
          const other = Buffer.from(header);
          other[bit >> 3] ^= 0x80 >> (bit & 7);
          expect(matches(p, envelopeStart(other, randomBytes(48)))).toBe(false);
        }
      }
    }
  });
});

describe('formatTable', () => {
  it('aligns like psql, numbers right', () => {
    expect(formatTable(['table', 'n'], [['a', '5'], ['bbb', '10']])).toBe(' table |  n\n-------+----\n a     |  5\n bbb   | 10\n(2 rows)\n');
  });
});
