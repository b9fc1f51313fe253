import { describe, expect, it } from 'vitest';
import type { KekConfig } from '../../src/config/types.js';
import { configuredBackends } from '../../src/crypto/kek/registry.js';

const dek = { maxAgeSeconds: 1, maxUses: 1, cacheSize: 1, cacheTtlSeconds: 0 };
const base = (o: Partial<KekConfig>): KekConfig => ({ backend: 'local', local: { previous: [] }, dek, ...o });

describe('configuredBackends', () => {
  it('always includes the primary', () => {
    expect(configuredBackends(base({ local: { path: '/k', previous: [] } }))).toEqual(['local']);
    expect(configuredBackends(base({ backend: 'aws_kms', awsKms: { keyId: 'k' } }))).toEqual(['aws_kms']);
  });

  it('keeps every other configured backend readable (migration)', () => {
    const kek = base({ backend: 'vault', local: { path: '/old', previous: [] }, vault: { mount: 'transit' } });
    expect(configuredBackends(kek).sort()).toEqual(['local', 'vault']);
    expect(configuredBackends(base({ backend: 'vault', local: { previous: ['/older'] } })).sort()).toEqual(['local', 'vault']);
  });
});
