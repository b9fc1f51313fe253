// The native relay on its own (native/relay.c through src/proxy/native-relay.ts):
// two real TCP connections, no Postgres. The relay sits where the proxy would,
// between `app` (a client) and `db` (a server).
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { NativeRelay, type RelayResult } from '../../src/proxy/native-relay.js';
import { until } from './helpers.js';

interface Rig {
  app: Socket;
  db: Socket;
  relay: NativeRelay;
  stopped: Promise<RelayResult>;
  /** Everything `db` (`app`) has read so far. */
  atDb: Buffer[];
  atApp: Buffer[];
}

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A connected pair: [the connecting side, the accepted side]. */
async function pair(): Promise<[Socket, Socket]> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const c = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise<void>((r) => c.once('connect', () => r()));
  const a = await accepted;
  for (const s of [c, a]) {
    s.setNoDelay(true);
    sockets.push(s);
  }
  return [c, a];
}

async function rig(maxClientFrame = 1 << 20, maxServerFrame = 1 << 20): Promise<Rig> {
  const [app, proxyClient] = await pair();
  const [proxyServer, db] = await pair();
  let onStop!: (r: RelayResult) => void;
  const stopped = new Promise<RelayResult>((r) => (onStop = r));
  const relay = NativeRelay.tryStart(proxyClient, proxyServer, maxClientFrame, maxServerFrame, onStop);
  if (!relay) throw new Error('the relay did not start');
  const atDb: Buffer[] = [];
  const atApp: Buffer[] = [];
  db.on('data', (d: Buffer) => atDb.push(d));
  app.on('data', (d: Buffer) => atApp.push(d));
  return { app, db, relay, stopped, atDb, atApp };
}

function frame(code: string, body: Buffer | string): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const h = Buffer.alloc(5);
  h[0] = code.charCodeAt(0);
  h.writeInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
}

const total = (bs: Buffer[]): number => bs.reduce((n, b) => n + b.length, 0);

describe.skipIf(!NativeRelay.available)('native relay (sockets, no Postgres)', () => {
  it('forwards both ways byte for byte, frames split at every byte, and counts the bytes', async () => {
    const r = await rig();
    const toDb = Buffer.concat([frame('Q', 'SELECT 1'), frame('P', Buffer.alloc(300, 7)), frame('S', '')]);
    // One byte per write: every header and body is split across reads.
    for (const b of toDb) {
      r.app.write(Buffer.from([b]));
      await new Promise((res) => setImmediate(res));
    }
    await until(() => total(r.atDb) === toDb.length);
    expect(Buffer.concat(r.atDb)).toEqual(toDb);
    const toApp = Buffer.concat(Array.from({ length: 2000 }, (_, i) => frame('D', `row ${i}`)));
    r.db.write(toApp);
    await until(() => total(r.atApp) === toApp.length);
    expect(Buffer.concat(r.atApp)).toEqual(toApp);
    expect(r.relay.bytes()).toEqual([toDb.length, toApp.length, toApp.length, toDb.length]);
    const res = r.relay.stop()!;
    expect(res).toMatchObject({ reason: 'stopped', toClient: null, toServer: null, clientAtBoundary: true, serverAtBoundary: true });
    expect(r.relay.active).toBe(false);
    expect(r.relay.stop()).toBeUndefined();
  });

  it('a stop inside a frame says the direction is not at a frame boundary', async () => {
    const r = await rig();
    const f = frame('Q', 'SELECT 1');
    r.app.write(f.subarray(0, 3)); // half a header
    await until(() => total(r.atDb) === 3);
    const res = r.relay.stop()!;
    expect(res.clientAtBoundary).toBe(false);
    expect(res.serverAtBoundary).toBe(true);
  });

  it('a length out of range: the frames before it go out, the relay stops with bad-frame', async () => {
    const r = await rig(1000);
    const good = frame('Q', 'SELECT 1');
    const bad = Buffer.from([0x51, 0, 0, 0x10, 0]); // 4096 > 1000
    r.app.write(Buffer.concat([good, bad, Buffer.alloc(50)]));
    const res = await r.stopped;
    expect(res).toMatchObject({ reason: 'bad-frame', side: 'client', badCode: 0x51, badLength: 4096 });
    await until(() => total(r.atDb) === good.length);
    await new Promise((res2) => setTimeout(res2, 50));
    expect(Buffer.concat(r.atDb)).toEqual(good);
    // A server frame with a length under 4.
    const r2 = await rig();
    r2.db.write(Buffer.from([0x43, 0, 0, 0, 2]));
    expect(await r2.stopped).toMatchObject({ reason: 'bad-frame', side: 'server', badCode: 0x43, badLength: 2 });
  });

  it('a reader that stops: the relay holds at most one read, stops reading the writer, and hands the rest back', async () => {
    const r = await rig(64 << 20, 64 << 20);
    r.db.pause();
    const big = frame('d', Buffer.alloc(16 << 20, 1));
    r.app.write(big);
    // The socket buffers fill up; the relay then holds what the kernel did not take.
    await new Promise((res) => setTimeout(res, 300));
    const before = r.relay.bytes();
    await new Promise((res) => setTimeout(res, 100));
    expect(r.relay.bytes()).toEqual(before); // nothing moves while the reader sleeps
    expect(before[0]).toBeLessThan(big.length);
    const res = r.relay.stop()!;
    expect(res.toServer).not.toBeNull();
    expect(res.toServer!.length).toBeLessThanOrEqual(64 * 1024);
    expect(res.bytesFromClient).toBe(res.bytesToServer + res.toServer!.length);
    expect(res.clientAtBoundary).toBe(false);
  });

  it('an end of stream on either side stops the relay with eof', async () => {
    const r = await rig();
    r.app.end();
    expect(await r.stopped).toMatchObject({ reason: 'eof', side: 'client', toServer: null });
    const r2 = await rig();
    r2.db.write(frame('Z', 'I'));
    r2.db.end();
    expect(await r2.stopped).toMatchObject({ reason: 'eof', side: 'server' });
    await until(() => total(r2.atApp) === 6); // what came before the end went out
  });

  it('refuses a socket with bytes buffered in Node', async () => {
    const [a, b] = await pair();
    a.write('x');
    await new Promise((res) => setTimeout(res, 20));
    // `b` has unread bytes buffered in Node: not idle.
    b.pause();
    await new Promise((res) => setTimeout(res, 20));
    const [c] = await pair();
    expect(NativeRelay.tryStart(b, c, 1000, 1000, () => {})).toBeUndefined();
    expect(NativeRelay.plain(c)).toBe(true);
  });
});
