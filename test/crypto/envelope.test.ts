import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeUnpadded } from '../../src/crypto/base64url.js';
import {
  decodeHeader,
  encodeWrappedDek,
  formatEnvelope,
  formatHeader,
  headerKey,
  isEnvelope,
  kekIdLabel,
  locate,
  parseEnvelope,
  PREFIX,
} from '../../src/crypto/envelope.js';
import { CMEKDecryptionError, type DecryptionFailureReason } from '../../src/crypto/errors.js';
import { BackendTag, type WrappedDek } from '../../src/crypto/kek/types.js';

const local = (): WrappedDek => ({
  tag: BackendTag.local,
  kekId: randomBytes(8),
  nonce: randomBytes(12),
  wrapped: randomBytes(48),
});

function reasonOf(fn: () => unknown): DecryptionFailureReason {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CMEKDecryptionError);
    return (e as CMEKDecryptionError).reason;
  }
  throw new Error('expected a CMEKDecryptionError');
}

const envelopeOf = (wrappedDek: Buffer, nonce = Buffer.alloc(0), token = 'gAAAA') =>
  `${PREFIX}${encodeUnpadded(wrappedDek)}|${encodeUnpadded(nonce)}|${token}`;

describe('envelope format', () => {
  it('formats and parses a local-backend envelope', () => {
    const w = local();
    const env = formatEnvelope(w, 'TOKEN');
    expect(env.startsWith(PREFIX)).toBe(true);
    expect(env.split('|')).toHaveLength(3);
    const p = parseEnvelope(env);
    expect(p.token).toBe('TOKEN');
    expect(p.wrapped).toEqual(w);
    expect(encodeWrappedDek(w).subarray(0, 10)).toEqual(Buffer.concat([Buffer.from([1, 8]), w.kekId]));
  });

  it('handles an empty nonce (vault, aws_kms) and a long ASCII kek id', () => {
    const w: WrappedDek = {
      tag: BackendTag.aws_kms,
      kekId: Buffer.from('arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'),
      nonce: Buffer.alloc(0),
      wrapped: randomBytes(184),
    };
    const env = formatEnvelope(w, 'T');
    expect(env).toContain('||T');
    expect(parseEnvelope(env).wrapped).toEqual(w);
    expect(kekIdLabel(w.tag, w.kekId)).toBe(w.kekId.toString());
  });

  it('labels kek ids safely', () => {
    expect(kekIdLabel(BackendTag.local, Buffer.from('0102ff', 'hex'))).toBe('0102ff');
    expect(kekIdLabel(BackendTag.vault, Buffer.from('7'))).toBe('7');
    expect(kekIdLabel(BackendTag.vault, Buffer.from([0x41, 0x0a]))).toBe('hex:410a');
  });

  it('uses the header text as the cache id', () => {
    const w = local();
    const v = Buffer.from(formatEnvelope(w, 'tok'));
    expect(headerKey(v, locate(v))).toBe(formatHeader(w).slice(PREFIX.length, -1));
  });

  it('recognises the prefix on strings and bytes', () => {
    expect(isEnvelope('cmek:v1:')).toBe(true);
    expect(isEnvelope(Buffer.from('cmek:v1:x'))).toBe(true);
    expect(isEnvelope('cmek:v2:x')).toBe(false);
    expect(isEnvelope(Buffer.from('cmek:v1'))).toBe(false);
    expect(isEnvelope('plain')).toBe(false);
  });

  it('refuses malformed envelopes with precise reasons', () => {
    const good = encodeWrappedDek(local());
    const cases: [string, DecryptionFailureReason][] = [
      [`${PREFIX}`, 'bad_format'],
      [`${PREFIX}abc`, 'bad_format'],
      [`${PREFIX}abc|def`, 'bad_format'],
      [`${PREFIX}${encodeUnpadded(good)}|x|y|z`, 'bad_format'],
      [`${PREFIX}${encodeUnpadded(good)}=|AAAA|tok`, 'bad_base64'],
      [`${PREFIX}${encodeUnpadded(good)}|AA!A|tok`, 'bad_base64'],
      [`${PREFIX}${encodeUnpadded(good).slice(0, -1)}+|AAAA|tok`, 'bad_base64'],
      [envelopeOf(Buffer.alloc(0)), 'truncated'],
      [envelopeOf(Buffer.from([1])), 'truncated'],
      [envelopeOf(Buffer.from([1, 8, 1, 2, 3])), 'truncated'],
      [envelopeOf(good.subarray(0, 10)), 'truncated'],
      [envelopeOf(Buffer.from([1, 0, 9, 9])), 'bad_format'],
      [envelopeOf(Buffer.from([0x09, 1, 1, 1])), 'unknown_backend'],
      [envelopeOf(Buffer.from([0x00, 1, 1, 1])), 'unknown_backend'],
    ];
    for (const [env, reason] of cases) {
      expect(reasonOf(() => parseEnvelope(env)), env).toBe(reason);
    }
  });

  it('decodeHeader copies out of the source buffer', () => {
    const w = local();
    const v = Buffer.from(formatEnvelope(w, 'tok'));
    const d = decodeHeader(v, locate(v));
    v.fill(0);
    expect(d).toEqual(w);
  });
});
