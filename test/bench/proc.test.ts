import { describe, expect, it } from 'vitest';
import { cleanup, exec, onCleanup, start } from '../../bench/lib/proc.js';

describe('bench process management', () => {
  it('exec collects output and the exit code', async () => {
    const r = await exec('sh', ['-c', 'read x; echo "got $x"; echo err >&2; exit 3'], { input: 'hello\n' });
    expect(r).toMatchObject({ code: 3, stdout: 'got hello\n', stderr: 'err\n' });
  });

  it('cleanup stops running commands and started children, then runs steps last-first', async () => {
    const order: string[] = [];
    const server = start('sleeper', 'sleep', ['30']);
    const running = exec('sleep', ['30']);
    onCleanup(() => order.push('first registered'));
    onCleanup(async () => {
      order.push(`second registered (server alive: ${server.child.exitCode === null && server.child.signalCode === null})`);
    });
    await new Promise((r) => setTimeout(r, 50));
    await cleanup();
    expect((await running).signal).toBe('SIGKILL');
    expect((await server.exited).signal).toBe('SIGTERM');
    // Steps run before the remaining children are stopped: a server's own stop() runs first.
    expect(order).toEqual(['second registered (server alive: true)', 'first registered']);
    await cleanup(); // twice is harmless
  });
});
