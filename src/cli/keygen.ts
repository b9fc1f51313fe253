// `pgcmek keygen --out PATH`: a new local KEK file (the crypto layer writes it:
// 32 random bytes, mode 600, never over an existing file).
import { generateKekFile } from '../crypto/kek/local.js';
import type { Command } from './command.js';
import { write } from './io.js';

export const keygen: Command = {
  name: 'keygen',
  summary: 'create a new local KEK file (32 random bytes, mode 600)',
  usage: 'pgcmek keygen --out PATH',
  description: `
Creates a key-encryption key for the local backend: 32 random bytes written to
PATH with mode 600. It never overwrites an existing file, since values encrypted
under the old KEK could no longer be read. Back the file up: losing it loses the
data encrypted under it. Point kek.local.path (or VIGILO_CMEK_LOCAL_KEK_PATH) at it.`,
  options: {
    out: { type: 'string', short: 'o', arg: 'PATH', help: 'where to write the KEK', required: true },
  },
  async run(values, io) {
    const out = values.out as string;
    const { kekId } = generateKekFile(out);
    await write(
      io.stdout,
      `wrote a new KEK to ${out} (mode 600, id ${kekId})\n` +
        `use it: kek.local.path: ${out} in the config file, or VIGILO_CMEK_LOCAL_KEK_PATH=${out}\n` +
        'back it up now: values encrypted under it cannot be read without it\n',
    );
    return 0;
  },
};
