// The kernel-splice peer of bench:proxy (`--kernel-splice`): bench/lib/kernel-splice.c,
// compiled with the machine's gcc and run as a child process. It relays in the
// kernel (BPF sockmap), so no process wakes per message: its TPS is the most any
// proxy hop reaches on this machine, which is what a target like "0.9x of direct"
// has to be measured against. Not every machine can run it (root, BPF, gcc):
// startKernelSplice says why not instead of failing the benchmark.
import { join } from 'node:path';
import { exec, start, tempDir } from './proc.js';
import { repoRoot } from './pgcmek.js';

/** No CPU reader: the relaying happens in softirq and kernel workers, which no process is charged for. */
export interface KernelSplice {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Builds and starts the relay, or returns why it cannot run here. */
export async function startKernelSplice(port: number, upstream: { host: string; port: number }): Promise<KernelSplice | { unavailable: string }> {
  if (process.platform !== 'linux') return { unavailable: 'not Linux' };
  if (process.getuid?.() !== 0) return { unavailable: 'needs root (CAP_BPF and CAP_NET_ADMIN)' };
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(upstream.host)) return { unavailable: `upstream ${upstream.host} is not an IPv4 address` };
  const bin = join(tempDir('pgcmek-kernel-splice-'), 'kernel-splice');
  const cc = await exec('gcc', ['-O2', '-Wall', '-o', bin, join(repoRoot(), 'bench', 'lib', 'kernel-splice.c')]);
  if (cc.code !== 0) return { unavailable: `gcc failed: ${(cc.stderr || cc.stdout).trim().split('\n').slice(-3).join(' ')}` };
  const proc = start('kernel-splice', bin, [String(port), upstream.host, String(upstream.port)]);
  const first = await new Promise<string>((resolve) => {
    let out = '';
    proc.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    void proc.exited.then((e) => resolve(`exited (${e.code ?? e.signal}): ${proc.output().trim()}`));
  });
  if (first !== 'listening') {
    await proc.stop('SIGKILL');
    return { unavailable: first.replace(/^unavailable: /, '') };
  }
  return { port, pid: proc.pid, stop: async () => void (await proc.stop('SIGTERM', 2_000)) };
}
