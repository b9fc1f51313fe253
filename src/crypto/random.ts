// Random IVs and nonces from a pooled CSPRNG buffer: one randomFillSync per
// 256 IVs instead of a native call per value (the same trick as Node's
// randomUUID). Only for public values (IVs, nonces); keys get their own allocation so
// no copy of a key sits in a shared buffer.
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let offset = POOL_SIZE;

/** Writes n random bytes into target at at (n <= 4096). */
export function fillRandom(target: Buffer, at: number, n: number): void {
  if (offset + n > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  pool.copy(target, at, offset, offset + n);
  offset += n;
}

/** A fresh buffer of n random public bytes (an IV or nonce). */
export function randomPublic(n: number): Buffer {
  const b = Buffer.alloc(n);
  fillRandom(b, 0, n);
  return b;
}

/** A fresh secret: its own allocation, never from a shared pool. */
export function randomSecret(n: number): Buffer {
  const b = Buffer.alloc(n);
  randomFillSync(b);
  return b;
}
