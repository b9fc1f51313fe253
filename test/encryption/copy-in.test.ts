import { describe, expect, it } from 'vitest';
import { CopyDataError, type CopyFormat } from '../../src/encryption/copy-format.js';
import { CopyInEncryptor, type CopyInOptions } from '../../src/encryption/copy-in.js';
import { MAX_OUTPUT_CHUNK } from '../../src/encryption/copy-output.js';

// A reversible stand-in for the envelope: prefix + base64url of the plaintext.
const PREFIX = 'cmek:v1:';
const enc = (v: Buffer | string): string => PREFIX + Buffer.from(v).toString('base64url');
const fakeEncrypt = (v: Buffer): Buffer => Buffer.from(enc(v), 'latin1');

type Opts = Omit<CopyInOptions, 'transform'> & { transform?: CopyInOptions['transform'] };

/** Pushes chunks (awaiting async output), returns all output and the per-push chunk counts. */
async function run(opts: Opts, chunks: Buffer[]): Promise<{ out: Buffer; perPush: number[] }> {
  const e = new CopyInEncryptor({ transform: fakeEncrypt, ...opts });
  const outs: Buffer[] = [];
  const perPush: number[] = [];
  for (const c of chunks) {
    const r = await e.push(c);
    perPush.push(r.length);
    outs.push(...r);
  }
  const last = await e.end();
  perPush.push(last.length);
  outs.push(...last);
  return { out: Buffer.concat(outs), perPush };
}

/** Same, requiring every result to be synchronous (the transform is). */
function runSync(opts: Opts, chunks: Buffer[]): Buffer {
  const e = new CopyInEncryptor({ transform: fakeEncrypt, ...opts });
  const outs: Buffer[] = [];
  for (const c of chunks) {
    const r = e.push(c);
    if (!Array.isArray(r)) throw new Error('async result from a sync transform');
    outs.push(...r);
  }
  const r = e.end();
  if (!Array.isArray(r)) throw new Error('async result from a sync transform');
  outs.push(...r);
  return Buffer.concat(outs);
}

/** Every way this test splits an input: whole, two chunks at each byte, 1-byte chunks, 3-byte chunks. */
function* splits(input: Buffer): Generator<Buffer[]> {
  yield [input];
  for (let i = 1; i < input.length; i++) yield [input.subarray(0, i), input.subarray(i)];
  yield Array.from(input, (_, i) => input.subarray(i, i + 1));
  const threes: Buffer[] = [];
  for (let i = 0; i < input.length; i += 3) threes.push(input.subarray(i, i + 3));
  yield threes;
}

/** Checks the expected output for every split, sync and async. */
async function check(opts: Opts, input: string | Buffer, expected: string | Buffer): Promise<void> {
  const inp = Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
  const exp = Buffer.isBuffer(expected) ? expected : Buffer.from(expected, 'utf8');
  for (const chunks of splits(inp)) {
    const got = runSync(opts, chunks);
    if (!got.equals(exp)) {
      expect({ split: chunks.map((c) => c.length), out: got.toString('latin1') }).toEqual({
        split: chunks.map((c) => c.length),
        out: exp.toString('latin1'),
      });
    }
  }
  const asyncOpts = { ...opts, transform: async (v: Buffer) => fakeEncrypt(v) };
  for (const chunks of [[inp], Array.from(inp, (_, i) => inp.subarray(i, i + 1))]) {
    expect((await run(asyncOpts, chunks)).out.toString('latin1')).toBe(exp.toString('latin1'));
  }
}

const TEXT: CopyFormat = { format: 'text' };
const CSV: CopyFormat = { format: 'csv' };

describe('CopyInEncryptor, text format', () => {
  it('encrypts the target field and leaves NULL, empty and other fields byte for byte', async () => {
    await check(
      { format: TEXT, fields: [1] },
      '1\thello\tx\n2\t\\N\ty\n3\t\tz\n4\tworld\t\\N\n',
      `1\t${enc('hello')}\tx\n2\t\\N\ty\n3\t\tz\n4\t${enc('world')}\t\\N\n`,
    );
  });

  it('encrypts empty strings when asked, per field', async () => {
    await check({ format: TEXT, fields: [0, 1], encryptEmpty: [1] }, '\t\n', `\t${enc('')}\n`);
    await check({ format: TEXT, fields: [0, 1], encryptEmpty: true }, '\t\n', `${enc('')}\t${enc('')}\n`);
  });

  it('decodes every escape before encrypting', async () => {
    const value = 'a\tb\\c\nd\r\b\f\vAAqN';
    await check(
      { format: TEXT, fields: [1] },
      '1\ta\\tb\\\\c\\nd\\r\\b\\f\\v\\101\\x41\\q\\N\tz\n',
      `1\t${enc(value)}\tz\n`,
    );
  });

  it('treats an escaped delimiter or escaped newline as data', async () => {
    await check({ format: TEXT, fields: [1] }, '1\tx\\\ty\tz\n', `1\t${enc('x\ty')}\tz\n`);
    await check({ format: TEXT, fields: [1] }, '1\tl1\\\nl2\tz\n', `1\t${enc('l1\nl2')}\tz\n`);
    await check({ format: TEXT, fields: [0] }, 'a\\\\\nb\n', `${enc('a\\')}\n${enc('b')}\n`);
  });

  it('handles multi-byte UTF-8 split anywhere', async () => {
    await check({ format: TEXT, fields: [1] }, '1\tpässwörd€😀\tß\n', `1\t${enc('pässwörd€😀')}\tß\n`);
  });

  it('keeps CRLF and CR line endings as found', async () => {
    await check({ format: TEXT, fields: [1] }, '1\tx\ty\r\n2\tz\tw\r\n', `1\t${enc('x')}\ty\r\n2\t${enc('z')}\tw\r\n`);
    await check({ format: TEXT, fields: [0] }, 'a\rb\r', `${enc('a')}\r${enc('b')}\r`);
    // An empty line after CRLF is a row of one empty field, not part of the terminator.
    await check({ format: TEXT, fields: [0], encryptEmpty: true }, 'a\r\n\r\n', `${enc('a')}\r\n${enc('')}\r\n`);
  });

  it('passes a header line through untouched', async () => {
    await check(
      { format: { format: 'text', header: true }, fields: [1] },
      'id\tsecret\n1\ts\n',
      `id\tsecret\n1\t${enc('s')}\n`,
    );
  });

  it('stops at the \\. end marker and forwards the rest untouched', async () => {
    await check(
      { format: TEXT, fields: [1] },
      '1\tx\ty\n\\.\n2\tsecret\tz\n',
      `1\t${enc('x')}\ty\n\\.\n2\tsecret\tz\n`,
    );
    // Postgres 15 still loads data before a \. on the same line.
    await check({ format: TEXT, fields: [1] }, '1\tx\\.\n', `1\t${enc('x')}\\.\n`);
    // \\. is an escaped backslash followed by a dot, not the marker.
    await check({ format: TEXT, fields: [0] }, '\\\\.\n', `${enc('\\.')}\n`);
  });

  it('flushes a final row without a newline at end()', async () => {
    await check({ format: TEXT, fields: [1] }, '1\tx\ty', `1\t${enc('x')}\ty`);
    await check({ format: TEXT, fields: [1] }, '1\tx', `1\t${enc('x')}`);
    // A lone trailing backslash at the end of data is dropped by Postgres; kept after the field.
    await check({ format: TEXT, fields: [1] }, '1\tx\\', `1\t${enc('x')}\\`);
  });

  it('leaves DEFAULT markers and rows without the target field alone', async () => {
    await check(
      { format: { format: 'text', defaultMarker: '\\D' }, fields: [1] },
      '1\t\\D\n2\n3\tv\n',
      `1\t\\D\n2\n3\t${enc('v')}\n`,
    );
  });

  it('honours a custom delimiter and NULL string', async () => {
    await check(
      { format: { format: 'text', delimiter: '|', null: 'NULL' }, fields: [1] },
      '1|NULL|x\n2|a\\|b|y\n3|\\N|z\n',
      `1|NULL|x\n2|${enc('a|b')}|y\n3|${enc('N')}|z\n`,
    );
  });

  it('writes a value that would read back as NULL so it does not', async () => {
    const out = runSync(
      { format: { format: 'text', null: 'X' }, fields: [0], transform: () => Buffer.from('X') },
      [Buffer.from('a\n')],
    );
    expect(out.toString()).toBe('\\130\n');
  });

  it('escapes a transform result that needs it', async () => {
    const out = runSync({ format: TEXT, fields: [0], transform: () => Buffer.from('a\tb\\c\nd') }, [Buffer.from('v\tw\n')]);
    expect(out.toString()).toBe('a\\tb\\\\c\\nd\tw\n');
  });
});

describe('CopyInEncryptor, CSV format', () => {
  it('decodes quoting, keeps NULL and empty strings apart', async () => {
    const input = '1,hello,x\n2,,y\n3,"",z\n4,"a,b",w\n5,"multi\nline",v\n6,"he said ""hi""",u\n7,a"b,c"d,t\n';
    const expected =
      `1,${enc('hello')},x\n2,,y\n3,"",z\n4,${enc('a,b')},w\n5,${enc('multi\nline')},v\n` +
      `6,${enc('he said "hi"')},u\n7,${enc('ab,cd')},t\n`;
    await check({ format: CSV, fields: [1] }, input, expected);
    await check({ format: CSV, fields: [1], encryptEmpty: true }, '2,,y\n3,"",z\n', `2,,y\n3,${enc('')},z\n`);
  });

  it('keeps quoted CR/LF inside a field and CRLF row ends', async () => {
    await check(
      { format: CSV, fields: [1] },
      '1,"a\r\nb",c\r\n2,d,"e\r\nf"\r\n',
      `1,${enc('a\r\nb')},c\r\n2,${enc('d')},"e\r\nf"\r\n`,
    );
  });

  it('supports a separate ESCAPE and another QUOTE', async () => {
    await check({ format: { format: 'csv', escape: '\\' }, fields: [1] }, '1,"a\\"b\\\\",c\n', `1,${enc('a"b\\')},c\n`);
    await check({ format: { format: 'csv', quote: "'" }, fields: [0] }, "'x,''y'\n", `${enc("x,'y")}\n`);
  });

  it('passes a header (even one with quoted newlines) untouched', async () => {
    await check(
      { format: { format: 'csv', header: 'match' }, fields: [1] },
      'id,"sec\nret"\n1,s\n',
      `id,"sec\nret"\n1,${enc('s')}\n`,
    );
  });

  it('leaves a \\. line alone but keeps encrypting after it (Postgres 18 reads on)', async () => {
    await check({ format: CSV, fields: [1] }, '1,x,y\n\\.\n2,s,z\n', `1,${enc('x')},y\n\\.\n2,${enc('s')},z\n`);
    // With csvEndMarker off (Postgres 18+) the line is a one-field row.
    await check({ format: { format: 'csv', csvEndMarker: false }, fields: [0] }, '\\.\n', `${enc('\\.')}\n`);
    // A \. that is quoted or not alone is data.
    await check({ format: CSV, fields: [0] }, '"\\."\n\\.,x\n', `${enc('\\.')}\n${enc('\\.')},x\n`);
    // At the very end without a newline Postgres reads it as data.
    await check({ format: CSV, fields: [0] }, 'a\n\\.', `${enc('a')}\n${enc('\\.')}`);
  });

  it('applies FORCE_NOT_NULL and FORCE_NULL as Postgres does', async () => {
    await check(
      { format: { format: 'csv', forceNotNull: [1] }, fields: [1], encryptEmpty: true },
      '1,,x\n2,"",y\n',
      `1,${enc('')},x\n2,${enc('')},y\n`,
    );
    await check(
      { format: { format: 'csv', forceNull: [1] }, fields: [1], encryptEmpty: true },
      '1,,x\n2,"",y\n3,"v",z\n',
      `1,,x\n2,"",y\n3,${enc('v')},z\n`,
    );
    await check(
      { format: { format: 'csv', null: 'NA', forceNotNull: 'all' }, fields: [1] },
      '1,NA,x\n2,"NA",y\n',
      `1,${enc('NA')},x\n2,${enc('NA')},y\n`,
    );
  });

  it('quotes a transform result that needs it', async () => {
    const out = runSync({ format: CSV, fields: [0], transform: () => Buffer.from('a,"b"\nc') }, [Buffer.from('v,w\n')]);
    expect(out.toString()).toBe('"a,""b""\nc",w\n');
    const empty = runSync({ format: CSV, fields: [0], encryptEmpty: true, transform: () => Buffer.alloc(0) }, [
      Buffer.from('"",w\n'),
    ]);
    expect(empty.toString()).toBe('"",w\n');
  });

  it('fails on an unterminated quoted field at the end of data', async () => {
    const e = new CopyInEncryptor({ format: CSV, fields: [1], transform: fakeEncrypt });
    expect(e.push(Buffer.from('1,"open\n'))).toEqual([]);
    expect(() => e.end()).toThrow(CopyDataError);
    expect(() => e.push(Buffer.from('x'))).toThrow(/already failed/);
  });
});

describe('CopyInEncryptor, limits and chunking', () => {
  it('emits at most one chunk per push and holds only the partial row', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => `${i}\tsecret-${i}\tpublic-${i}\n`).join('');
    const input = Buffer.from(rows);
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length; i += 1000) chunks.push(input.subarray(i, i + 1000));
    const { out, perPush } = await run({ format: TEXT, fields: [1] }, chunks);
    expect(perPush.every((n) => n <= 1)).toBe(true);
    expect(out.toString()).toBe(rows.replace(/secret-\d+/g, (s) => enc(s)));
  });

  it('splits output larger than MAX_OUTPUT_CHUNK into several chunks', () => {
    const row = 'x'.repeat(1 << 20) + '\n';
    const rows = Buffer.from(row.repeat(20));
    const e = new CopyInEncryptor({ format: TEXT, fields: [0], transform: (v) => Buffer.concat([Buffer.from('cmek:v1:'), v]) });
    const out = e.push(rows) as Buffer[];
    expect(out.length).toBeGreaterThan(1);
    expect(out.every((b) => b.length <= MAX_OUTPUT_CHUNK)).toBe(true);
    expect(Buffer.concat(out).equals(Buffer.from(('cmek:v1:' + row).repeat(20)))).toBe(true);
  });

  it('forwards a chunk with no work as the same bytes without copying', () => {
    const e = new CopyInEncryptor({ format: TEXT, fields: [1], transform: fakeEncrypt });
    const chunk = Buffer.from('1\t\\N\tx\n2\t\\N\ty\n');
    const r = e.push(chunk) as Buffer[];
    expect(r).toHaveLength(1);
    expect(r[0].buffer).toBe(chunk.buffer);
    const none = new CopyInEncryptor({ format: TEXT, fields: [], transform: fakeEncrypt });
    expect((none.push(chunk) as Buffer[])[0]).toBe(chunk);
  });

  it('fails a row longer than the limit, whole or held across chunks', () => {
    const big = Buffer.from('1\t' + 'x'.repeat(300) + '\n');
    const e = new CopyInEncryptor({ format: TEXT, fields: [1], transform: fakeEncrypt, maxRowBytes: 256 });
    expect(() => e.push(big)).toThrow(expect.objectContaining({ code: 'COPY_ROW_TOO_LONG', sqlState: '54000' }));
    const held = new CopyInEncryptor({ format: CSV, fields: [1], transform: fakeEncrypt, maxRowBytes: 256 });
    held.push(Buffer.from('1,"'));
    let err: unknown;
    try {
      for (let i = 0; i < 10; i++) held.push(Buffer.from('y'.repeat(50)));
    } catch (e2) {
      err = e2;
    }
    expect(err).toBeInstanceOf(CopyDataError);
    expect((err as CopyDataError).code).toBe('COPY_ROW_TOO_LONG');
    // Rows at the limit are fine.
    const ok = new CopyInEncryptor({ format: TEXT, fields: [1], transform: fakeEncrypt, maxRowBytes: 256 });
    expect(() => ok.push(Buffer.from('1\t' + 'x'.repeat(254) + '\n'))).not.toThrow();
  });

  it('refuses a secret Postgres would refuse as invalid UTF-8 or NUL', () => {
    for (const row of ['1\t\\xff\n', '1\t\\0\n', Buffer.from([0x31, 0x09, 0xc3, 0x0a])]) {
      const e = new CopyInEncryptor({ format: TEXT, fields: [1], transform: fakeEncrypt });
      expect(() => e.push(Buffer.from(row))).toThrow(expect.objectContaining({ code: 'COPY_BAD_ENCODING', sqlState: '22021' }));
    }
    // The same bytes in a field that is not encrypted are the server's business.
    const other = new CopyInEncryptor({ format: TEXT, fields: [1], transform: fakeEncrypt });
    expect(() => other.push(Buffer.from('\\xff\tok\n'))).not.toThrow();
  });

  it('propagates a failing transform and stays failed', async () => {
    const e = new CopyInEncryptor({
      format: TEXT,
      fields: [0],
      transform: async () => {
        throw new Error('kms down');
      },
    });
    await expect(e.push(Buffer.from('a\nb\n'))).rejects.toThrow('kms down');
    expect(() => e.push(Buffer.from('c\n'))).toThrow(/already failed/);
  });

  it('runs the async transforms of one chunk concurrently and keeps row order', async () => {
    let inFlight = 0;
    let peak = 0;
    const e = new CopyInEncryptor({
      format: TEXT,
      fields: [0],
      transform: async (v) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 5 - v.length));
        inFlight--;
        return fakeEncrypt(v);
      },
    });
    const out = await e.push(Buffer.from('a\nbb\nccc\n'));
    expect(peak).toBe(3);
    expect(Buffer.concat(out).toString()).toBe(`${enc('a')}\n${enc('bb')}\n${enc('ccc')}\n`);
  });

  it('does not keep a reference to a chunk the caller reuses', () => {
    const e = new CopyInEncryptor({ format: TEXT, fields: [0], transform: fakeEncrypt });
    const buf = Buffer.from('abc');
    expect(e.push(buf)).toEqual([]);
    buf.fill(0x7a); // the caller's framer reuses its buffer
    const r = e.push(Buffer.from('d\n')) as Buffer[];
    expect(Buffer.concat(r).toString()).toBe(`${enc('abcd')}\n`);
  });
});
