import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { decodeBindHead } from '../../src/protocol/frontend/bind.js';
import { renameBindStatement } from '../../src/encryption/session-bind.js';

describe('renameBindStatement', () => {
  it.each([
    ['named portal, text values', { portal: 'p1', statement: 'lk', values: ['a', null, 'ünï'] }],
    ['unnamed portal, binary formats, no values', { portal: '', statement: 'é', values: [], binary: true }],
    ['long names', { portal: 'x'.repeat(60), statement: 'y'.repeat(63), values: [Buffer.from([0, 1, 2])] }],
  ])('is the same Bind naming the new statement (%s)', (_, b) => {
    const frame = serialize.bind(b as Parameters<typeof serialize.bind>[0]);
    const out = renameBindStatement(frame, decodeBindHead(frame), 'pgcmek_wide_12');
    expect(out).toEqual(serialize.bind({ ...(b as Parameters<typeof serialize.bind>[0]), statement: 'pgcmek_wide_12' }));
    expect(decodeBindHead(out).statement).toBe('pgcmek_wide_12');
  });
});
