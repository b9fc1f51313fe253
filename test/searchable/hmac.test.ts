// The one-shot HMAC-SHA256 gives createHmac's bytes for every key and message length around the block size.
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha256 } from '../../src/searchable/hmac.js';

describe('HmacSha256', () => {
  it.each([16, 32, 64])('matches createHmac with a %i-byte key', (keyLen) => {
    const key = randomBytes(keyLen);
    const h = new HmacSha256(key);
    for (const len of [0, 1, 31, 55, 56, 63, 64, 65, 119, 127, 128, 129, 1000, 5000, 3]) {
      const m = randomBytes(len);
      expect(h.digest(m).toString('hex')).toBe(createHmac('sha256', key).update(m).digest('hex'));
    }
  });

  it('refuses keys longer than a block (they would need hashing first)', () => {
    expect(() => new HmacSha256(randomBytes(65))).toThrow(RangeError);
  });
});
