import { describe, expect, it } from 'vitest';
import { encodeCsvField, encodeTextField } from '../../src/encryption/copy-fields.js';
import { resolveCopyFormat, type CopyFormat } from '../../src/encryption/copy-format.js';
import { CopyInEncryptor } from '../../src/encryption/copy-in.js';
import { CopyOutDecryptor, type CopyOutOptions } from '../../src/encryption/copy-out.js';

const PREFIX = 'cmek:v1:';
const enc = (v: Buffer | string): string => PREFIX + Buffer.from(v).toString('base64url');
const fakeEncrypt = (v: Buffer): Buffer => Buffer.from(enc(v), 'latin1');
const fakeDecrypt = (c: Buffer): Buffer => Buffer.from(c.toString('latin1').slice(PREFIX.length), 'base64url');

function pushAll(d: { push(b: Buffer): unknown; end(): unknown }, chunks: Buffer[]): Buffer {
  const outs: Buffer[] = [];
  for (const c of chunks) outs.push(...(d.push(c) as Buffer[]));
  outs.push(...(d.end() as Buffer[]));
  return Buffer.concat(outs);
}

function decryptRows(opts: Omit<CopyOutOptions, 'transform'>, rows: string[]): string {
  const d = new CopyOutDecryptor({ transform: fakeDecrypt, ...opts });
  return pushAll(
    d,
    rows.map((r) => Buffer.from(r)),
  ).toString();
}

describe('CopyOutDecryptor', () => {
  it('decrypts and re-escapes text rows, leaving NULL and legacy plaintext as they are', () => {
    const rows = [
      `1\t${enc('plain')}\tx\n`,
      `2\t\\N\ty\n`,
      `3\tlegacy plaintext\tz\n`,
      `4\t${enc('tab\there\\back\nnew\rcr')}\tw\n`,
      `5\t${enc('pässwörd😀')}\t\n`,
    ];
    expect(decryptRows({ format: { format: 'text' }, fields: [1] }, rows)).toBe(
      '1\tplain\tx\n2\t\\N\ty\n3\tlegacy plaintext\tz\n4\ttab\\there\\\\back\\nnew\\rcr\tw\n5\tpässwörd😀\t\n',
    );
  });

  it('quotes decrypted CSV values exactly when COPY TO would', () => {
    const rows = [
      `1,${enc('a,b')},x\n`,
      `2,${enc('')},y\n`,
      `3,,z\n`,
      `4,${enc('say "hi"')},w\n`,
      `5,${enc('l1\r\nl2')},v\n`,
      `6,${enc('plain')},u\n`,
    ];
    expect(decryptRows({ format: { format: 'csv' }, fields: [1] }, rows)).toBe(
      '1,"a,b",x\n2,"",y\n3,,z\n4,"say ""hi""",w\n5,"l1\r\nl2",v\n6,plain,u\n',
    );
  });

  it('keeps FORCE_QUOTE fields quoted and guards a lone \\. field', () => {
    expect(decryptRows({ format: { format: 'csv', forceQuote: [0] }, fields: [0] }, [`"${enc('v')}",1\n`])).toBe('"v",1\n');
    expect(decryptRows({ format: { format: 'csv' }, fields: [0] }, [`${enc('\\.')}\n`, `${enc('\\.')},2\n`])).toBe(
      '"\\.\"\n\\.,2\n',
    );
    // Quoted because of a delimiter inside the ciphertext; the plaintext needs no quotes.
    expect(decryptRows({ format: { format: 'csv', delimiter: ':' }, fields: [1] }, [`1:"${enc('v')}"\n`])).toBe('1:v\n');
  });

  it('finds the ciphertext behind an escaped delimiter in text format', () => {
    const c = enc('secret').replace(/:/g, '\\:');
    expect(decryptRows({ format: { format: 'text', delimiter: ':' }, fields: [1] }, [`1:${c}:z\n`])).toBe('1:secret:z\n');
  });

  it('passes the header row through and handles rows split across messages', () => {
    const d = new CopyOutDecryptor({ format: { format: 'csv', header: true }, fields: [1], transform: fakeDecrypt });
    const all = Buffer.from(`id,secret\n1,${enc('s')}\n`);
    const out: Buffer[] = [];
    for (let i = 0; i < all.length; i += 4) out.push(...(d.push(all.subarray(i, i + 4)) as Buffer[]));
    out.push(...(d.end() as Buffer[]));
    expect(Buffer.concat(out).toString()).toBe('id,secret\n1,s\n');
  });

  it('treats \\. in server data as a value, never as an end marker', () => {
    expect(decryptRows({ format: { format: 'text' }, fields: [1] }, ['\\\\.\tx\n', `1\t${enc('after')}\n`])).toBe(
      '\\\\.\tx\n1\tafter\n',
    );
  });

  it('supports an async transform and a custom encrypted-value test', async () => {
    const d = new CopyOutDecryptor({
      format: { format: 'text' },
      fields: [0],
      isEncrypted: (v) => v.toString().startsWith('{'),
      transform: async (v) => Buffer.from(v.toString().toUpperCase()),
    });
    expect(Buffer.concat(await d.push(Buffer.from('{a}\tx\n')))).toEqual(Buffer.from('{A}\tx\n'));
    expect(d.push(Buffer.from('b\tx\n'))).toEqual([Buffer.from('b\tx\n')]);
  });

  it('propagates a decryption failure', () => {
    const d = new CopyOutDecryptor({
      format: { format: 'text' },
      fields: [0],
      transform: () => {
        throw new Error('CMEKDecryptionError');
      },
    });
    expect(() => d.push(Buffer.from(`${enc('x')}\n`))).toThrow('CMEKDecryptionError');
  });
});

// Randomised: rows written the way COPY TO writes them survive CopyIn → CopyOut unchanged
// under any chunking, and CopyIn's output does not depend on how its input is split.
describe('CopyIn → CopyOut round trip', () => {
  const ALPHABET = ['a', 'Z', '0', '7', ' ', '\t', '\n', '\r', '\\', '"', "'", ',', '|', '.', 'N', 'x', 'é', '€', '😀', '\b', '\x01'];

  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s * 1664525 + 1013904223) >>> 0;
      return s / 2 ** 32;
    };
  }

  function randomValue(r: () => number): string | null {
    const k = r();
    if (k < 0.1) return null;
    if (k < 0.15) return '';
    if (k < 0.18) return '\\.';
    let s = '';
    const n = Math.floor(r() * 12);
    for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
    return s;
  }

  function writeRows(format: CopyFormat, rows: (string | null)[][], eol: string): string {
    const fmt = resolveCopyFormat(format);
    const delim = String.fromCharCode(fmt.delim);
    return rows
      .map((row) =>
        row
          .map((v) => {
            if (v === null) return fmt.nullMarker.toString();
            const b = Buffer.from(v);
            return (fmt.csv
              ? encodeCsvField(fmt, b, { forceQuote: false, single: row.length === 1, avoidDefault: false })
              : encodeTextField(b, fmt.delim)
            ).toString();
          })
          .join(delim) + eol,
      )
      .join('');
  }

  function randomChunks(input: Buffer, r: () => number): Buffer[] {
    const out: Buffer[] = [];
    for (let p = 0; p < input.length; ) {
      const n = 1 + Math.floor(r() * 40);
      out.push(input.subarray(p, p + n));
      p += n;
    }
    return out;
  }

  const formats: [CopyFormat, string][] = [
    [{ format: 'text' }, '\n'],
    [{ format: 'text', delimiter: '|' }, '\n'],
    [{ format: 'text' }, '\r\n'],
    [{ format: 'csv' }, '\n'],
    [{ format: 'csv' }, '\r\n'],
    [{ format: 'csv', quote: "'", escape: '\\', delimiter: '|' }, '\n'],
  ];

  for (const [format, eol] of formats) {
    it(`${JSON.stringify(format)} ${JSON.stringify(eol)}`, () => {
      const r = rng(42);
      for (let round = 0; round < 150; round++) {
        const width = 1 + Math.floor(r() * 4);
        const rows = Array.from({ length: 1 + Math.floor(r() * 6) }, () => Array.from({ length: width }, () => randomValue(r)));
        const text = Buffer.from(writeRows(format, rows, eol));
        const fields = [...Array(width).keys()].filter(() => r() < 0.6);
        const inOpts = { format, fields, transform: fakeEncrypt, encryptEmpty: true };
        const whole = pushAll(new CopyInEncryptor(inOpts), [text]);
        const split = pushAll(new CopyInEncryptor(inOpts), randomChunks(text, r));
        expect(split.toString()).toBe(whole.toString());
        // Every non-NULL target value became a ciphertext.
        const expectedCount = rows.reduce((n, row) => n + fields.filter((f) => row[f] !== null).length, 0);
        expect(whole.toString().split(PREFIX).length - 1).toBe(expectedCount);
        const back = pushAll(new CopyOutDecryptor({ format, fields, transform: fakeDecrypt }), randomChunks(whole, r));
        expect(back.toString()).toBe(text.toString());
      }
    });
  }
});
