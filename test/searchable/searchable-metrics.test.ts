// CountingCodec counts a searchable column's deterministic writes with the
// column's other encryptions (pgcmek_values_encrypted_total{column}), never
// values it leaves as they are (an empty string, a value already under the
// column key), and counts a write that fails by its reason.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { CountingCodec } from '../../src/metrics/counting-codec.js';
import { ProxyStats } from '../../src/metrics/stats.js';
import { SearchableColumnKey } from '../../src/searchable/column-key.js';
import { DeterministicKey } from '../../src/searchable/deterministic.js';
import { GroupKey, makeWrapping } from '../../src/searchable/group-key.js';

const DEK_POLICY = { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 100, cacheTtlSeconds: 0 };
const col = (column: string) => ({ column, searchable: true, onDecryptError: 'error' as const, encryptEmpty: false });

function setup(wrapped = true) {
  const backend = LocalKekBackend.fromKeys([randomBytes(32)]);
  const keyring = new Keyring({ primary: backend, readable: [], dek: DEK_POLICY });
  const stats = new ProxyStats();
  stats.registerColumns([{ schema: 'public', table: 'api_token', columns: [col('token_hash'), col('other')] }]);
  const dek = randomBytes(32);
  const g = new GroupKey('column:"public"."api_token"."token_hash"', new DeterministicKey(dek), () => 0);
  if (wrapped) g.setWrappings([makeWrapping(backend.wrapSync(dek), true, -Infinity)], { tag: backend.tag, kekId: backend.primaryKekId() });
  const key = new SearchableColumnKey({ schema: 'public', table: 'api_token', column: 'token_hash', encryptEmpty: false }, g, 3);
  return { codec: new CountingCodec(keyring, stats), stats, key, keyring };
}

describe('CountingCodec.encryptSearchable', () => {
  it('counts each deterministic write under the column, like the other encryptions', async () => {
    const { codec, stats, key, keyring } = setup();
    const a = codec.encryptSearchable(Buffer.from('hash-a'), key);
    const again = codec.encryptSearchable(Buffer.from('hash-a'), key);
    expect(again.equals(a)).toBe(true);
    codec.encryptSearchable(Buffer.from('hash-b'), key);
    expect(stats.columns.get('public.api_token.token_hash')).toEqual({ encrypted: 3, decrypted: 0 });
    expect(stats.columns.get('public.api_token.other')).toEqual({ encrypted: 0, decrypted: 0 });
    // The same counter as the random path, for the column's decryptions too.
    expect((await codec.decrypt(a, col('token_hash'), 'text', false)).toString()).toBe('hash-a');
    await keyring.close();
  });

  it('does not count what it leaves unchanged: an empty string, a value already under the column key', async () => {
    const { codec, stats, key, keyring } = setup();
    const empty = Buffer.alloc(0);
    expect(codec.encryptSearchable(empty, key)).toBe(empty);
    const v = codec.encryptSearchable(Buffer.from('hash-a'), key);
    expect(codec.encryptSearchable(v, key)).toBe(v);
    expect(stats.columns.get('public.api_token.token_hash')!.encrypted).toBe(1);
    await keyring.close();
  });

  it('a column the stats were not told about gets its own label', async () => {
    const { codec, stats, keyring } = setup();
    const dek = randomBytes(32);
    const backend = LocalKekBackend.fromKeys([randomBytes(32)]);
    const g = new GroupKey('group:g', new DeterministicKey(dek), () => 0);
    g.setWrappings([makeWrapping(backend.wrapSync(dek), true, -Infinity)], { tag: backend.tag, kekId: backend.primaryKekId() });
    const key = new SearchableColumnKey({ schema: 's', table: 't', column: 'c', encryptEmpty: false, keyGroup: 'g' }, g, 3);
    codec.encryptSearchable(Buffer.from('x'), key);
    expect(stats.columns.get('s.t.c')).toEqual({ encrypted: 1, decrypted: 0 });
    await keyring.close();
  });

  it('a write that fails is counted by its reason and rethrown', async () => {
    const { codec, stats, key, keyring } = setup(false);
    expect(() => codec.encryptSearchable(Buffer.from('hash-a'), key)).toThrow(/no usable wrapping/);
    expect(stats.encryptFailures.get('SearchableKeyError')).toBe(1);
    expect(stats.columns.get('public.api_token.token_hash')!.encrypted).toBe(0);
    await keyring.close();
  });
});
