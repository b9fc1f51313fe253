// Bind parameters written to encrypted columns: encrypted in place (the other
// bytes of the frame copied as they are), text and binary formats, arrays,
// NULLs; a malformed Bind is reported by the full decoder, never forwarded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ColumnPolicy } from '../../src/config/types.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { decodeBind, encodeBind, type Bind } from '../../src/protocol/frontend/bind.js';
import { encryptBind, type BindContext, type BindPlan } from '../../src/encryption/params.js';
import { ValueCodec } from '../../src/encryption/values.js';
import type { ColumnTarget, ParamSite } from '../../src/sql/types.js';

const policy: ColumnPolicy = { column: 'secret', searchable: false, onDecryptError: 'error', encryptEmpty: false };
const target: ColumnTarget = { schema: 'public', table: 't', column: 'secret', policy };
const site = (param: number, elements = false): ParamSite => ({ param, target, elements, ranges: [] });
const plan = (...sites: ParamSite[]): BindPlan => ({ writes: new Map(sites.map((s) => [s.param, s])) });
const b = (s: string) => Buffer.from(s, 'utf8');

function bind(values: (Buffer | null)[], paramFormats: number[] = [], resultFormats: number[] = []): Bind {
  return { portal: 'p1', statement: 'stmt_é', paramFormats, values, resultFormats };
}

describe('encryptBind', () => {
  let dir: string;
  let keyring: Keyring;
  let ctx: BindContext;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgcmek-params-'));
    generateKekFile(join(dir, 'kek'));
    keyring = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'kek'), previous: [] }, dek: { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 10, cacheTtlSeconds: 0 } });
    ctx = { shapeOf: () => 'text', codec: new ValueCodec(keyring), key: () => { throw new Error('no searchable key in this test'); } };
  });
  afterAll(async () => {
    await keyring.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const open = async (v: Buffer | null) => (v === null ? null : Buffer.from(await keyring.decrypt(v.toString('latin1')), 'utf8').toString());

  it('encrypts the written parameters; names, formats, other values and result formats keep their bytes', async () => {
    const input = bind([b('1'), b('s3cret'), null, b('keep me'), b('second')], [0], [1, 0]);
    const out = encryptBind(encodeBind(input), plan(site(2), site(3), site(5)), ctx, 'stmt_é') as Buffer;
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    const d = decodeBind(out);
    expect({ ...d, values: [] }).toEqual({ ...input, values: [] });
    expect(d.values[0]!.toString()).toBe('1');
    expect(d.values[1]!.toString('latin1')).toMatch(/^cmek:v1:/);
    expect(d.values[2]).toBeNull();
    expect(d.values[3]!.toString()).toBe('keep me');
    expect([await open(d.values[1]!), await open(d.values[4]!)]).toEqual(['s3cret', 'second']);
  });

  it('per-parameter format codes: a binary text value is the same bytes; an empty value and an envelope stay as they are', async () => {
    const env = b(await keyring.encrypt('already'));
    const out = encryptBind(encodeBind(bind([b('a'), b(''), env], [1, 0, 1])), plan(site(1), site(2), site(3)), ctx, 's') as Buffer;
    const d = decodeBind(out);
    expect(d.paramFormats).toEqual([1, 0, 1]);
    expect(await open(d.values[0]!)).toBe('a');
    expect(d.values[1]!.length).toBe(0);
    expect(d.values[2]!.equals(env)).toBe(true);
    // Nothing to change at all: undefined (the frame is forwarded as it came).
    expect(encryptBind(encodeBind(bind([b(''), null])), plan(site(1), site(2)), ctx, 's')).toBeUndefined();
  });

  it('array parameters element by element, text and binary', async () => {
    const text = decodeBind(encryptBind(encodeBind(bind([b('{a,"b c",NULL}')])), plan(site(1, true)), ctx, 's') as Buffer);
    const items = text.values[0]!.toString().slice(1, -1).split(',');
    expect(items[2]).toBe('NULL');
    expect(await Promise.all(items.slice(0, 2).map((x) => open(b(JSON.parse(x) as string))))).toEqual(['a', 'b c']);
    // Binary text[]: ndim 1, no nulls, elem type 25, 2 elements from 1.
    const arr = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1]), Buffer.from([0, 0, 0, 1]), b('x'), Buffer.from([0, 0, 0, 2]), b('yz')]);
    const bin = decodeBind(encryptBind(encodeBind(bind([arr], [1])), plan(site(1, true)), ctx, 's') as Buffer).values[0]!;
    let at = 20;
    const els: string[] = [];
    for (let k = 0; k < 2; k++) {
      const n = bin.readInt32BE(at);
      els.push((await open(bin.subarray(at + 4, at + 4 + n)))!);
      at += 4 + n;
    }
    expect(els).toEqual(['x', 'yz']);
  });

  it('a Bind with fewer values than the statement writes: the missing ones are left to the server', async () => {
    const d = decodeBind(encryptBind(encodeBind(bind([b('only')])), plan(site(1), site(2)), ctx, 's') as Buffer);
    expect(d.values.length).toBe(1);
    expect(await open(d.values[0]!)).toBe('only');
  });

  it('a malformed Bind throws (the proxy refuses it); it is never forwarded half-encrypted', () => {
    const good = encodeBind(bind([b('v')]));
    const cases = [
      good.subarray(0, good.length - 1), // cut short
      Buffer.concat([good, Buffer.from([0])]), // trailing byte (length word fixed below)
    ].map((f) => {
      const c = Buffer.from(f);
      c.writeInt32BE(c.length - 1, 1);
      return c;
    });
    const lying = Buffer.from(good);
    lying.writeInt32BE(lying.readInt32BE(good.length - 2 - 4 - 1) + 100, good.length - 2 - 4 - 1); // value length past the end
    for (const f of [...cases, lying]) expect(() => encryptBind(f, plan(site(1)), ctx, 's')).toThrow();
  });

  it('a value that needs a remote KEK call: a Promise of the rebuilt frame', async () => {
    class SlowCodec extends ValueCodec {
      override encrypt(value: Buffer, p: ColumnPolicy, s: 'text' | 'json' | 'jsonb', bin: boolean): Promise<Buffer> {
        return new Promise((res) => setImmediate(() => res(super.encrypt(value, p, s, bin) as Buffer)));
      }
    }
    const r = encryptBind(encodeBind(bind([b('x'), b('later')])), plan(site(2)), { ...ctx, codec: new SlowCodec(keyring) }, 's');
    expect(r).toBeInstanceOf(Promise);
    const d = decodeBind((await r)!);
    expect([d.values[0]!.toString(), await open(d.values[1]!)]).toEqual(['x', 'later']);
  });
});
