#!/usr/bin/env node
// The `pgcmek` executable: wires the process's streams, environment and signals to
// main() (src/cli/main.ts) and turns its result into the exit code.
import { main } from './cli/main.js';

const code = await main(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signals: process,
});
// main() has awaited its own writes; exit now rather than wait for idle sockets
// (a KMS/Vault client's keep-alive) to let the event loop drain.
process.exit(code);
