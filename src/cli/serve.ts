// `pgcmek serve --config PATH`: load the config and the KEKs, start the proxy, and
// shut down on signals. SIGTERM (docker stop, Kubernetes) lets open sessions
// finish for shutdown_grace_seconds; SIGINT (Ctrl-C), or a second signal, closes
// them at once. This follows Postgres's own smart/fast shutdown split.
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import { createLogger, setLogger, type Logger } from '../log.js';
import type { ProxyServer } from '../proxy/server.js';
import { CONFIG_OPTION } from './crypt.js';
import type { Command } from './command.js';
import type { CliIo, Signal } from './io.js';

function loggerFor(config: Config, io: CliIo): Logger {
  // The process's stdout gets pino's TTY handling; anything else (tests) is written to directly.
  return io.stdout === process.stdout ? createLogger(config.log.level) : createLogger(config.log.level, io.stdout);
}

/** Resolves once the server has closed after a signal. */
function closeOnSignals(server: ProxyServer, config: Config, logger: Logger, io: CliIo): Promise<void> {
  const signals = io.signals ?? process;
  const graceMs = config.shutdownGraceSeconds * 1000;
  return new Promise((resolve, reject) => {
    let closing: Promise<void> | undefined;
    const on = (signal: Signal) => () => {
      if (closing) {
        logger.warn({ signal }, 'second signal: closing open sessions now');
        void server.close(0).catch(() => {});
        return;
      }
      const grace = signal === 'SIGTERM' ? graceMs : 0;
      logger.info({ signal, graceSeconds: grace / 1000 }, 'shutting down');
      closing = server.close(grace);
      closing.then(
        () => {
          signals.off('SIGTERM', onTerm);
          signals.off('SIGINT', onInt);
          resolve();
        },
        reject,
      );
    };
    const onTerm = on('SIGTERM');
    const onInt = on('SIGINT');
    signals.on('SIGTERM', onTerm);
    signals.on('SIGINT', onInt);
  });
}

export const serve: Command = {
  name: 'serve',
  summary: 'run the proxy',
  usage: 'pgcmek serve --config PATH',
  description: `
Runs the proxy described by the config file: listens on listen.host:listen.port,
connects each client to upstream, encrypts the columns under "encrypted".
Environment variables (VIGILO_CMEK_*, PGCMEK_LOG_LEVEL) override the file.

SIGTERM stops accepting connections and gives open sessions
shutdown_grace_seconds to finish; SIGINT (Ctrl-C), or a second signal, closes
them at once. Logs are JSON lines on stdout (pretty on a terminal).`,
  options: { config: { ...CONFIG_OPTION, help: 'config file', required: true } },
  async run(values, io) {
    const config = loadConfig(values.config as string, io.env ?? process.env);
    const logger = loggerFor(config, io);
    setLogger(logger);
    // Loaded here, not at the top: keygen/encrypt/decrypt must work even if the proxy's modules cannot load.
    const { startProxy } = await import('../proxy/server.js');
    const { createProxyDeps } = await import('../encryption/deps.js');
    const keyring = await Keyring.fromConfig(config.kek);
    try {
      const { deps } = await createProxyDeps(config, logger, keyring);
      const server = await startProxy(config, { logger, keyring, ...deps });
      const stopped = closeOnSignals(server, config, logger, io);
      logger.info({ host: server.host, port: server.port, config: config.source, pid: process.pid }, 'pgcmek ready');
      await stopped;
      logger.info('pgcmek stopped');
      return 0;
    } finally {
      await keyring.close();
    }
  },
};
