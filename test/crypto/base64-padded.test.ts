// The token text written straight into a buffer is byte for byte Node's padded base64url.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { paddedLength, writePadded } from '../../src/crypto/base64url.js';

const padded = (b: Buffer) => b.toString('base64url') + '='.repeat((3 - (b.length % 3)) % 3);

describe('writePadded', () => {
  it('matches Buffer base64url with padding for every length 0..300, at any offset, touching nothing else', () => {
    for (let n = 0; n <= 300; n++) {
      const src = randomBytes(n + 7);
      const at = n % 11;
      const out = Buffer.alloc(at + paddedLength(n) + 5, 0xaa);
      const end = writePadded(src, 3, 3 + n, out, at);
      expect(end).toBe(at + paddedLength(n));
      expect(out.toString('latin1', at, end)).toBe(padded(src.subarray(3, 3 + n)));
      expect(out.subarray(0, at).every((x) => x === 0xaa)).toBe(true);
      expect(out.subarray(end).every((x) => x === 0xaa)).toBe(true);
    }
  });

  it('uses the URL-safe alphabet', () => {
    const src = Buffer.from([0xfb, 0xff, 0xbf, 0xfe]);
    const out = Buffer.alloc(paddedLength(src.length));
    writePadded(src, 0, src.length, out, 0);
    expect(out.toString('latin1')).toBe('-_-__g==');
  });
});
