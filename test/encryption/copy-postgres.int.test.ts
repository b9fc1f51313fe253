// The COPY rewriters against a real server: the data a client would send goes to
// one table as is and, through CopyInEncryptor, to another. Postgres itself decodes
// both, so "stored ciphertext = transform(what Postgres stored from the original)"
// proves the parser agrees with Postgres on every value. COPY TO output of the
// encrypted table, through CopyOutDecryptor, must equal the plain table's byte for byte.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCsvField, encodeTextField } from '../../src/encryption/copy-fields.js';
import { resolveCopyFormat, type CopyFormat } from '../../src/encryption/copy-format.js';
import { CopyInEncryptor } from '../../src/encryption/copy-in.js';
import { CopyOutDecryptor } from '../../src/encryption/copy-out.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';

const PREFIX = 'cmek:v1:';
const enc = (v: Buffer | string): string => PREFIX + Buffer.from(v).toString('base64url');
const fakeEncrypt = (v: Buffer): Buffer => Buffer.from(enc(v), 'latin1');
const fakeDecrypt = (c: Buffer): Buffer => Buffer.from(c.toString('latin1').slice(PREFIX.length), 'base64url');

// ---- driving COPY through node-postgres with our own CopyData messages ----

interface Conn {
  query(text: string): void;
  sendCopyFromChunk(b: Buffer): void;
  endCopyFrom(): void;
}

/** Runs a COPY statement over the simple protocol; COPY FROM sends each chunk as one CopyData. */
function copy(client: pg.Client, sql: string, chunks: Buffer[] = []): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to: ${sql}`)), 20_000);
    const received: Buffer[] = [];
    const q = {
      submit: (c: Conn) => c.query(sql),
      handleCopyInResponse: (c: Conn) => {
        for (const ch of chunks) c.sendCopyFromChunk(ch);
        c.endCopyFrom();
      },
      handleCopyData: (msg: { chunk: Buffer }) => received.push(Buffer.from(msg.chunk)),
      handleCommandComplete: () => {},
      handleRowDescription: () => {},
      handleDataRow: () => {},
      handleEmptyQuery: () => {},
      // node-postgres detaches the query on an ErrorResponse: ReadyForQuery never reaches it.
      handleError: (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
      handleReadyForQuery: () => {
        clearTimeout(timer);
        resolve(received);
      },
    };
    client.query(q as unknown as pg.QueryConfig);
  });
}

function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function copyOptions(f: CopyFormat, direction: 'from' | 'to', forceQuote?: string): string {
  const o = [`FORMAT ${f.format}`];
  if (f.delimiter !== undefined) o.push(`DELIMITER ${lit(f.delimiter)}`);
  if (f.null !== undefined) o.push(`NULL ${lit(f.null)}`);
  if (f.quote !== undefined) o.push(`QUOTE ${lit(f.quote)}`);
  if (f.escape !== undefined) o.push(`ESCAPE ${lit(f.escape)}`);
  if (f.header) o.push(`HEADER ${direction === 'to' ? 'true' : f.header === 'match' ? 'match' : 'true'}`);
  if (f.defaultMarker !== undefined && direction === 'from') o.push(`DEFAULT ${lit(f.defaultMarker)}`);
  if (forceQuote && direction === 'to') o.push(`FORCE_QUOTE (${forceQuote})`);
  return o.join(', ');
}

// ---- random data and the several ways a client may write it ----

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const CHARS = [...'aZ09 .,:|"\'\\Nx-_', '\t', '\n', '\r', '\b', '\f', '\v', '\x01', 'é', '€', '😀'];
function randomValue(r: () => number): string | null {
  const k = r();
  if (k < 0.1) return null;
  if (k < 0.16) return '';
  if (k < 0.2) return ['\\N', '\\.', 'NULL', '\\'][Math.floor(r() * 4)];
  let s = '';
  for (let n = Math.floor(r() * 14); n > 0; n--) s += CHARS[Math.floor(r() * CHARS.length)];
  return s;
}

const OCTAL_SAFE = /[^0-7xbfnrtvN.]/u;
/** Text format, choosing per character among raw, octal, hex and `\c` spellings. */
function creativeText(v: string, delim: string, r: () => number, escapedNewline: boolean): string {
  let out = '';
  for (const ch of v) {
    const special = ch === '\\' || ch === delim || ch === '\n' || ch === '\r';
    const k = r();
    const bytes = Buffer.from(ch);
    if (k < 0.25) out += [...bytes].map((b) => '\\' + b.toString(8).padStart(3, '0')).join('');
    else if (k < 0.45) out += [...bytes].map((b) => '\\x' + b.toString(16).padStart(2, '0')).join('');
    else if (k < 0.6 && bytes.length === 1 && OCTAL_SAFE.test(ch) && (ch !== '\n' || escapedNewline) && ch !== '\r') out += '\\' + ch;
    else out += special ? encodeTextField(bytes, delim.charCodeAt(0)).toString() : ch;
  }
  return out;
}

/** CSV, quoting random segments (a field may be partly quoted). */
function creativeCsv(v: string, f: ReturnType<typeof resolveCopyFormat>, r: () => number): string {
  const quote = String.fromCharCode(f.quote);
  const esc = f.escape < 0 ? quote : String.fromCharCode(f.escape);
  const delim = String.fromCharCode(f.delim);
  const chars = [...v];
  let out = '';
  let sawQuote = false;
  let prevQuoted = false;
  for (let i = 0; i < chars.length; ) {
    const n = 1 + Math.floor(r() * 4);
    const seg = chars.slice(i, i + n);
    i += n;
    const needs = seg.some((c) => c === delim || c === quote || c === '\n' || c === '\r');
    if (needs || r() < 0.3) {
      // Two quoted sections side by side would read as a doubled quote: extend the open one.
      if (prevQuoted) out = out.slice(0, -1);
      else out += quote;
      out += seg.map((c) => (c === quote || c === esc ? esc + c : c)).join('') + quote;
      sawQuote = prevQuoted = true;
    } else {
      out += seg.join('');
      prevQuoted = false;
    }
  }
  if (!sawQuote && Buffer.from(out).equals(f.nullMarker)) out = quote + quote + out;
  return out;
}

type Style = 'canonical' | 'creative';
function writeCopy(format: CopyFormat, rows: (string | null)[][], style: Style, eol: string, r: () => number): string {
  const f = resolveCopyFormat(format);
  const delim = String.fromCharCode(f.delim);
  const lines = rows.map((row) =>
    row
      .map((v) => {
        if (v === null) return f.nullMarker.toString();
        if (style === 'canonical' || r() < 0.2) {
          const b = Buffer.from(v);
          return (f.csv
            ? encodeCsvField(f, b, { forceQuote: r() < 0.2, single: false, avoidDefault: false })
            : encodeTextField(b, f.delim)
          ).toString();
        }
        return f.csv ? creativeCsv(v, f, r) : creativeText(v, delim, r, eol === '\n');
      })
      .join(delim),
  );
  const header = format.header ? ['id', 'a', 'secret', 'b'].join(delim) + eol : '';
  return header + lines.join(eol) + eol;
}

function randomChunks(input: Buffer, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < input.length; ) {
    const n = 1 + Math.floor(r() * (r() < 0.5 ? 8 : 300));
    out.push(input.subarray(p, p + n));
    p += n;
  }
  return out;
}

async function encryptStream(e: CopyInEncryptor, chunks: Buffer[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...(await e.push(c)));
  out.push(...(await e.end()));
  return out;
}

async function decryptStream(d: CopyOutDecryptor, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...(await d.push(c)));
  out.push(...(await d.end()));
  return Buffer.concat(out);
}

describe('COPY rewriting agrees with Postgres', () => {
  let db: TestDb;
  let serverVersion = 0;
  beforeAll(async () => {
    db = await createTestDatabase('copyenc');
    serverVersion = Number((await db.client.query('SHOW server_version_num')).rows[0].server_version_num);
    await db.client.query(`SET client_encoding = 'UTF8'`);
  });
  afterAll(async () => db.drop());

  const cases: { name: string; format: CopyFormat; style: Style; eol: string; encryptEmpty: boolean; finalNewline?: boolean }[] = [
    { name: 'text canonical', format: { format: 'text' }, style: 'canonical', eol: '\n', encryptEmpty: false },
    { name: 'text creative escapes', format: { format: 'text' }, style: 'creative', eol: '\n', encryptEmpty: true },
    { name: 'text creative CRLF', format: { format: 'text' }, style: 'creative', eol: '\r\n', encryptEmpty: false },
    {
      name: 'text delimiter ":" NULL "NULL" header, no final newline',
      format: { format: 'text', delimiter: ':', null: 'NULL', header: true },
      style: 'creative',
      eol: '\n',
      encryptEmpty: true,
      finalNewline: false,
    },
    { name: 'csv canonical', format: { format: 'csv' }, style: 'canonical', eol: '\n', encryptEmpty: false },
    { name: 'csv creative CRLF header', format: { format: 'csv', header: 'match' }, style: 'creative', eol: '\r\n', encryptEmpty: true },
    {
      name: "csv quote ' escape \\ delimiter |",
      format: { format: 'csv', quote: "'", escape: '\\', delimiter: '|' },
      style: 'creative',
      eol: '\n',
      encryptEmpty: false,
    },
    {
      name: 'csv delimiter ":" NULL "NULL", no final newline',
      format: { format: 'csv', delimiter: ':', null: 'NULL' },
      style: 'creative',
      eol: '\n',
      encryptEmpty: true,
      finalNewline: false,
    },
  ];

  cases.forEach((c, n) => {
    it(c.name, async () => {
      for (let seed = 0; seed < 4; seed++) await roundTrip(c, n, seed);
    });
  });

  async function roundTrip(c: (typeof cases)[number], n: number, seed: number): Promise<void> {
    {
      const r = rng(1000 * seed + n);
      const rows = Array.from({ length: 60 }, (_, i) => [String(i + 1), randomValue(r), randomValue(r), randomValue(r)]);
      let text = writeCopy(c.format, rows, c.style, c.eol, r);
      if (c.finalNewline === false) text = text.slice(0, -c.eol.length);
      const input = Buffer.from(text);
      const t = `t${n}_${seed}`;
      await db.client.query(`CREATE TABLE ${t}_plain (id int, a text, secret text, b text)`);
      await db.client.query(`CREATE TABLE ${t}_enc (id int, a text, secret text, b text)`);
      const from = copyOptions(c.format, 'from');
      await copy(db.client, `COPY ${t}_plain (id, a, secret, b) FROM STDIN WITH (${from})`, randomChunks(input, r));
      const e = new CopyInEncryptor({ format: c.format, fields: [2], transform: fakeEncrypt, encryptEmpty: c.encryptEmpty });
      const rewritten = await encryptStream(e, randomChunks(input, r));
      await copy(db.client, `COPY ${t}_enc (id, a, secret, b) FROM STDIN WITH (${from})`, rewritten);

      const plain = (await db.client.query(`SELECT * FROM ${t}_plain ORDER BY id`)).rows;
      const stored = (await db.client.query(`SELECT * FROM ${t}_enc ORDER BY id`)).rows;
      expect(plain).toHaveLength(60);
      expect(stored).toHaveLength(60);
      let encrypted = 0;
      for (let i = 0; i < plain.length; i++) {
        const p = plain[i];
        const s = stored[i];
        expect([s.id, s.a, s.b]).toEqual([p.id, p.a, p.b]);
        if (p.secret === null || (p.secret === '' && !c.encryptEmpty)) {
          expect(s.secret).toBe(p.secret);
        } else {
          expect(s.secret).toBe(enc(p.secret));
          encrypted++;
        }
      }
      expect(encrypted).toBeGreaterThan(30);

      // COPY TO: decrypting the encrypted table's output gives the plain table's output, byte for byte.
      const toFormat: CopyFormat = { ...c.format, header: c.format.header ? true : undefined };
      const to = copyOptions(toFormat, 'to', c.format.format === 'csv' && n % 2 === 0 ? 'secret' : undefined);
      const expected = Buffer.concat(await copy(db.client, `COPY (SELECT * FROM ${t}_plain ORDER BY id) TO STDOUT WITH (${to})`));
      const encOut = await copy(db.client, `COPY (SELECT * FROM ${t}_enc ORDER BY id) TO STDOUT WITH (${to})`);
      const forceQuote = to.includes('FORCE_QUOTE') ? [2] : undefined;
      const d = new CopyOutDecryptor({ format: { ...toFormat, forceQuote }, fields: [2], transform: fakeDecrypt });
      expect((await decryptStream(d, encOut)).toString()).toBe(expected.toString());
    }
  }

  it('text: nothing after the \\. end marker is loaded', async () => {
    await db.client.query('CREATE TABLE m1 (id int, secret text)');
    const e = new CopyInEncryptor({ format: { format: 'text' }, fields: [1], transform: fakeEncrypt });
    const out = await encryptStream(e, [Buffer.from('1\tone\n\\.\n2\ttwo\n')]);
    await copy(db.client, 'COPY m1 FROM STDIN', out);
    expect((await db.client.query('SELECT id, secret FROM m1')).rows).toEqual([{ id: 1, secret: enc('one') }]);
  });

  it('csv: a \\. line ends the data before Postgres 18 and is a value from 18 on', async () => {
    await db.client.query('CREATE TABLE m2 (secret text)');
    const endMarker = serverVersion < 180000;
    const e = new CopyInEncryptor({ format: { format: 'csv', csvEndMarker: endMarker }, fields: [0], transform: fakeEncrypt });
    const out = await encryptStream(e, [Buffer.from('one\n\\.\ntwo\n')]);
    await copy(db.client, 'COPY m2 FROM STDIN (FORMAT csv)', out);
    const got = (await db.client.query('SELECT secret FROM m2')).rows.map((x) => x.secret);
    expect(got).toEqual(endMarker ? [enc('one')] : [enc('one'), enc('\\.'), enc('two')]);
  });

  it('csv: FORCE_NULL and FORCE_NOT_NULL give the values Postgres would store', async () => {
    await db.client.query('CREATE TABLE m3 (id int, fnn text, fn text)');
    const format: CopyFormat = { format: 'csv', forceNotNull: [1], forceNull: [2] };
    const e = new CopyInEncryptor({ format, fields: [1, 2], transform: fakeEncrypt, encryptEmpty: true });
    const out = await encryptStream(e, [Buffer.from('1,,""\n2,"",\n3,x,y\n')]);
    await copy(db.client, 'COPY m3 FROM STDIN (FORMAT csv, FORCE_NOT_NULL (fnn), FORCE_NULL (fn))', out);
    expect((await db.client.query('SELECT * FROM m3 ORDER BY id')).rows).toEqual([
      { id: 1, fnn: enc(''), fn: null },
      { id: 2, fnn: enc(''), fn: null },
      { id: 3, fnn: enc('x'), fn: enc('y') },
    ]);
  });

  it('DEFAULT markers are left for the server (Postgres 16+)', async () => {
    if (serverVersion < 160000) return;
    await db.client.query(`CREATE TABLE m4 (id int, secret text DEFAULT 'dflt')`);
    const format: CopyFormat = { format: 'text', defaultMarker: '\\D' };
    const e = new CopyInEncryptor({ format, fields: [1], transform: fakeEncrypt });
    const out = await encryptStream(e, [Buffer.from('1\t\\D\n2\tv\n')]);
    await copy(db.client, `COPY m4 FROM STDIN (${copyOptions(format, 'from')})`, out);
    expect((await db.client.query('SELECT * FROM m4 ORDER BY id')).rows).toEqual([
      { id: 1, secret: 'dflt' },
      { id: 2, secret: enc('v') },
    ]);
  });
});
