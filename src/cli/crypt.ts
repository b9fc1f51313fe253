// `pgcmek encrypt` / `pgcmek decrypt`: one value on stdin, the result on stdout.
// The value never appears on the command line (shell history, `ps`), only on stdin.
import { parseConfig, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { PREFIX } from '../crypto/envelope.js';
import { Keyring } from '../crypto/keyring.js';
import type { Command, OptionSpec, OptionValues } from './command.js';
import { readValue, write, type CliIo } from './io.js';

export const CONFIG_OPTION: OptionSpec = {
  type: 'string',
  short: 'c',
  arg: 'PATH',
  help: 'config file (default: none, the VIGILO_CMEK_* environment alone)',
};

/** The config from --config, or from the environment alone when there is no file. */
export function configFrom(values: OptionValues, io: CliIo): Config {
  const env = io.env ?? process.env;
  return typeof values.config === 'string' ? loadConfig(values.config, env) : parseConfig('', 'environment', env);
}

async function withKeyring<T>(config: Config, fn: (k: Keyring) => Promise<T>): Promise<T> {
  const keyring = await Keyring.fromConfig(config.kek);
  try {
    return await fn(keyring);
  } finally {
    await keyring.close();
  }
}

const KEK_HELP = `
The KEK comes from the config file's kek section (--config) or, without a file,
from the environment: VIGILO_CMEK_BACKEND (local|vault|aws_kms, default local),
VIGILO_CMEK_LOCAL_KEK_PATH, VIGILO_CMEK_VAULT_ADDR, VIGILO_CMEK_VAULT_TOKEN,
VIGILO_CMEK_VAULT_KEY_NAME, VIGILO_CMEK_AWS_KMS_KEY_ID.`;

export const encrypt: Command = {
  name: 'encrypt',
  summary: 'encrypt a value read from stdin (prints cmek:v1:...)',
  usage: 'pgcmek encrypt [--config PATH] < value',
  description: `
Reads one value from stdin, removes exactly one trailing newline, and prints its
envelope (${PREFIX}...) and a newline. Example:

  printf '%s' 'xoxb-123' | VIGILO_CMEK_LOCAL_KEK_PATH=./kek.key pgcmek encrypt
${KEK_HELP}`,
  options: { config: CONFIG_OPTION },
  async run(values, io) {
    const config = configFrom(values, io);
    const plaintext = await readValue(io);
    const envelope = await withKeyring(config, (k) => k.encrypt(plaintext));
    await write(io.stdout, envelope + '\n');
    return 0;
  },
};

export const decrypt: Command = {
  name: 'decrypt',
  summary: 'decrypt a cmek:v1: value read from stdin',
  usage: 'pgcmek decrypt [--config PATH] < envelope',
  description: `
Reads one envelope (${PREFIX}...) from stdin, removes exactly one trailing newline,
and prints the plaintext and a newline. Input without the ${PREFIX} prefix is an
error here (the proxy passes such legacy plaintext through; this command is for
checking stored values). A value that cannot be decrypted fails with exit code 1
and the reason; it never prints garbage.
${KEK_HELP}`,
  options: { config: CONFIG_OPTION },
  async run(values, io) {
    const config = configFrom(values, io);
    const envelope = await readValue(io);
    if (!Keyring.isEncrypted(envelope)) {
      throw new Error(`the input is not an encrypted value (it does not start with ${PREFIX}); nothing to decrypt`);
    }
    const plaintext = await withKeyring(config, (k) => k.decrypt(envelope));
    await write(io.stdout, plaintext + '\n');
    return 0;
  },
};
