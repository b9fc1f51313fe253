// The floor of a Node.js forwarder, as a benchmark peer: a bare relay that
// pipes each client socket to its own upstream connection (`socket.pipe()` both
// ways, Nagle off), run as a child process like pgcmek. It understands nothing
// of the protocol, so whatever pgcmek costs above it is pgcmek's own work, and
// whatever it costs above PgBouncer is the runtime's (libuv + streams).
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { start } from './proc.js';
import { procTreeStat, type ProcStat } from './procstat.js';

export interface NodeRelay {
  port: number;
  pid: number;
  stat(): ProcStat | undefined;
  stop(): Promise<void>;
}

/** Starts the relay as a child process (`node <this file> <port> <upstream host> <upstream port>`). */
export async function startNodeRelay(port: number, upstream: { host: string; port: number }): Promise<NodeRelay> {
  const proc = start('node-relay', process.execPath, [fileURLToPath(import.meta.url), String(port), upstream.host, String(upstream.port)]);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) resolve();
    });
    void proc.exited.then((e) => reject(new Error(`node relay exited (${e.code ?? e.signal}): ${proc.output()}`)));
  });
  return { port, pid: proc.pid, stat: () => procTreeStat(proc.pid), stop: async () => void (await proc.stop('SIGTERM', 2_000)) };
}

function serve(port: number, host: string, upPort: number): void {
  const server = createServer({ noDelay: true }, (client) => {
    const up = connect({ host, port: upPort, noDelay: true });
    client.pipe(up).on('error', () => client.destroy());
    up.pipe(client).on('error', () => up.destroy());
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write('listening\n'));
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(Number(process.argv[2]), process.argv[3]!, Number(process.argv[4]));
