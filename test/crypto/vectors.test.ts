// The committed envelope vectors (test/fixtures/envelope-vectors.json) are the
// interoperability contract of docs/FORMAT.md: rebuild each one from its inputs
// and require the exact same string, then read it back through a keyring.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeWrappedDek, formatEnvelope, parseEnvelope } from '../../src/crypto/envelope.js';
import { encrypt } from '../../src/crypto/fernet.js';
import { kekIdOf, LocalKekBackend, sealDek } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';

interface Vector {
  name: string;
  plaintext: string;
  plaintext_hex: string;
  kek_hex: string;
  kek_id_hex: string;
  dek_hex: string;
  gcm_nonce_hex: string;
  fernet_iv_hex: string;
  timestamp: number;
  wrapped_dek_hex: string;
  fernet_token: string;
  envelope: string;
}

const { vectors } = JSON.parse(
  readFileSync(new URL('../fixtures/envelope-vectors.json', import.meta.url), 'utf8'),
) as { vectors: Vector[] };
const hex = (s: string) => Buffer.from(s, 'hex');
const policy = { maxAgeSeconds: 60, maxUses: 10, cacheSize: 10, cacheTtlSeconds: 0 };

describe('envelope vectors', () => {
  it('covers empty, ASCII, block-boundary and multi-byte plaintexts', () => {
    expect(vectors.map((v) => v.name)).toEqual(['ascii', 'empty', 'forty_bytes', 'block_boundary', 'multibyte_utf8']);
  });

  it.each(vectors)('$name: regenerates byte for byte', (v) => {
    expect(Buffer.from(v.plaintext, 'utf8').toString('hex')).toBe(v.plaintext_hex);
    const kek = hex(v.kek_hex);
    const kekId = kekIdOf(kek);
    expect(kekId.toString('hex')).toBe(v.kek_id_hex);
    const w = sealDek(kek, kekId, hex(v.dek_hex), hex(v.gcm_nonce_hex));
    expect(encodeWrappedDek(w).toString('hex')).toBe(v.wrapped_dek_hex);
    const token = encrypt(hex(v.dek_hex), v.plaintext, { iv: hex(v.fernet_iv_hex), timestamp: v.timestamp });
    expect(token).toBe(v.fernet_token);
    expect(formatEnvelope(w, token)).toBe(v.envelope);
  });

  it.each(vectors)('$name: parses and decrypts', async (v) => {
    const { wrapped, token } = parseEnvelope(v.envelope);
    expect(wrapped.kekId.toString('hex')).toBe(v.kek_id_hex);
    expect(token).toBe(v.fernet_token);
    const keyring = new Keyring({ primary: LocalKekBackend.fromKeys([hex(v.kek_hex)]), readable: [], dek: policy });
    expect(await keyring.decrypt(v.envelope)).toBe(v.plaintext);
    expect(keyring.describe(v.envelope)).toEqual({ backend: 'local', kekId: v.kek_id_hex, primary: true });
    await keyring.close();
  });
});
