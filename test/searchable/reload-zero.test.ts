// A retired column key leaves no key material behind: GroupKey.destroy zeroes
// the DEK halves, the IV key and both HMACs' key and pad states, and forgets the token
// cache (plaintext token hashes); SearchableRegistry.close (what
// EncryptionLayer.close and a config reload's dispose call) closes every
// database's keys. The reload wiring itself: test/searchable/reload-zero.int.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DeterministicKey } from '../../src/searchable/deterministic.js';
import { GroupKey } from '../../src/searchable/group-key.js';

/** An HMAC-SHA256 key (src/crypto/hmac-sha256.ts): its key copy and the SHA-256 states after the key pads. */
type Mac = { key: Buffer; inner: Int32Array; outer: Int32Array };
type Internals = { ivKey: Buffer; ivMac: Mac; fernet: { hmac: Mac } };

/** Every buffer of a column key that holds (or is derived from) its DEK: the IV key's and the Fernet signing key's MAC states too. */
function keyBuffers(k: DeterministicKey): (Buffer | Int32Array)[] {
  const i = k as unknown as Internals;
  const tag = i.fernet.hmac;
  return [k.fernet.signingKey, k.fernet.encryptionKey, i.ivKey, i.ivMac.key, i.ivMac.inner, i.ivMac.outer, tag.key, tag.inner, tag.outer];
}

const zero = (b: Buffer | Int32Array) => b.every((x) => x === 0);

describe('zeroing a column key', () => {
  it('destroy() zeroes every buffer derived from the DEK and empties the token cache', () => {
    const key = new DeterministicKey(randomBytes(32));
    const g = new GroupKey('column:"public"."t"."c"', key, () => 0, 100);
    for (let i = 0; i < 3; i++) g.token(Buffer.from('seen twice')); // admitted to the cache on its second sight
    expect(g.cacheStats().hits).toBeGreaterThan(0);
    expect((g as unknown as { tokens: { count(): number } }).tokens.count()).toBe(1);
    const bufs = keyBuffers(key);
    expect(bufs.some(zero)).toBe(false);
    g.destroy();
    for (const b of bufs) expect(zero(b)).toBe(true);
    const cache = (g as unknown as { tokens: { count(): number; arena: Buffer } }).tokens;
    expect(cache.count()).toBe(0);
    expect(cache.arena.every((x) => x === 0)).toBe(true); // the cached plaintext is wiped, not just dropped
  });
});
