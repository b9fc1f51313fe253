// HMAC-SHA256 under one fixed key (RFC 2104), as two one-shot SHA-256 over the
// precomputed key pads. Per call this creates no Hmac object: building one (and
// its OpenSSL context) was most of a deterministic token's cost under load, and
// a lookup computes two HMACs. Same bytes as createHmac (tested); falls back to
// createHmac where node:crypto has no one-shot hash (Node < 20.12).
import * as nodeCrypto from 'node:crypto';

type OneShot = (algorithm: string, data: Buffer, outputEncoding: 'buffer') => Buffer;
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;
const BLOCK = 64;

export class HmacSha256 {
  /** ipad block, then room for the message (grown on demand; wiped after each use). */
  private inner: Buffer;
  /** opad block, then the inner digest. */
  private readonly outer: Buffer;
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length > BLOCK) throw new RangeError('HMAC keys longer than a block are not used here');
    this.key = Buffer.from(key);
    this.inner = Buffer.alloc(BLOCK + 128, 0x36);
    this.outer = Buffer.alloc(BLOCK + 32, 0x5c);
    for (let i = 0; i < key.length; i++) {
      this.inner[i]! ^= key[i]!;
      this.outer[i]! ^= key[i]!;
    }
  }

  digest(data: Buffer): Buffer {
    if (!oneShot) return nodeCrypto.createHmac('sha256', this.key).update(data).digest();
    if (this.inner.length < BLOCK + data.length) {
      const grown = Buffer.alloc(BLOCK + data.length * 2);
      this.inner.copy(grown, 0, 0, BLOCK);
      this.inner.fill(0);
      this.inner = grown;
    }
    const end = BLOCK + data.length;
    data.copy(this.inner, BLOCK);
    oneShot('sha256', this.inner.subarray(0, end), 'buffer').copy(this.outer, BLOCK);
    this.inner.fill(0, BLOCK, end);
    return oneShot('sha256', this.outer, 'buffer');
  }

  destroy(): void {
    this.inner.fill(0);
    this.outer.fill(0);
    this.key.fill(0);
  }
}
