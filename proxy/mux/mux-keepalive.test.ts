import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { FakeClock } from '../../common/clock.js';
import { controlFrame, Deframer, FLAG_ACK, FrameType, frameHeader } from './frame.js';
import { MuxSession, type MuxLimit } from './mux-session.js';
import { frameRecorder, MuxTestPairs, tick, until } from './mux-test-pair.js';

/**
 * The mesh multiplexer's keepalive (wren-mux/2's PING, limits.peerKeepalive): the calling
 * side PINGs its session every interval and closes it when nothing arrives within the
 * timeout of a PING, so a connection gone silent (a frozen relay, a dead NAT path) is not
 * joined by every later request. Real loopback sockets, the keepalive's time a fake clock.
 */
const pairs = new MuxTestPairs();
afterEach(() => pairs.destroyAll());
afterAll(() => pairs.close());

const KA = { intervalMs: 1000, timeoutMs: 300 };
const FRAME_BYTES = 14;

/** The frames a hand-written peer reads from its socket: [type, flags, id, u32] for control frames, [type, flags, id, length] for DATA. */
function framesOf(s: Socket): [number, number, number, number][] {
  const got: [number, number, number, number][] = [];
  let pending = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 10 && pending.length >= 10 + pending.readUInt32BE(0)) {
      const len = pending.readUInt32BE(0);
      got.push([pending[4], pending[5], pending.readUInt32BE(6), pending[4] === FrameType.Data ? len : pending.readUInt32BE(10)]);
      pending = pending.subarray(10 + len);
    }
  });
  return got;
}

/** A client session (keepalive on a fake clock) whose peer is a hand-written one: the test plays the peer's part. */
async function clientOfRawPeer(o: { pings: boolean }): Promise<{ client: MuxSession; peer: Socket; frames: [number, number, number, number][]; clock: FakeClock; limits: MuxLimit[] }> {
  const { raw, accepted } = await pairs.connection();
  accepted.on('error', () => undefined);
  const clock = new FakeClock();
  const limits: MuxLimit[] = [];
  const client = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: 65536, connectionWindowBytes: 1 << 20, maxStreams: 10, keepalive: KA, clock, onLimit: (l) => limits.push(l) });
  pairs.track(client);
  if (o.pings) client.usePing();
  return { client, peer: accepted, frames: framesOf(accepted), clock, limits };
}

const pings = (frames: [number, number, number, number][]) => frames.filter((f) => f[0] === FrameType.Ping);

describe('PING frames', () => {
  test('are an unknown frame type on wren-mux/1 (as for the release before /2), a control frame on /2', () => {
    const bytes = Buffer.concat([controlFrame(FrameType.Ping, 0, 0xdeadbeef), controlFrame(FrameType.Ping, 0, 7, FLAG_ACK)]);
    const v1 = frameRecorder();
    new Deframer(v1).push(bytes);
    expect(v1.frames).toEqual([[-1, 0, 0, 'unknown frame type 4']]);
    // Split anywhere, the same two frames with their flags.
    for (let cut = 0; cut <= bytes.length; cut++) {
      const v2 = frameRecorder();
      const d = new Deframer(v2);
      d.pings = true;
      d.push(bytes.subarray(0, cut));
      d.push(bytes.subarray(cut));
      expect(v2.frames).toEqual([
        [FrameType.Ping, 0, 0, 'deadbeef'],
        [FrameType.Ping, FLAG_ACK, 0, '00000007'],
      ]);
    }
  });

  test('a /2 session answers each PING with its payload and ACK, ignores an ACK, and closes on a PING on a stream', async () => {
    const { raw, accepted } = await pairs.connection();
    raw.on('error', () => undefined);
    const server = new MuxSession(accepted as unknown as TLSSocket, { client: false, windowBytes: 65536, connectionWindowBytes: 1 << 20, maxStreams: 10 });
    pairs.track(server);
    server.usePing();
    const frames = framesOf(raw);
    raw.write(Buffer.concat([controlFrame(FrameType.Ping, 0, 0xdeadbeef), controlFrame(FrameType.Ping, 0, 1, FLAG_ACK), controlFrame(FrameType.Ping, 0, 2)]));
    await until(() => frames.length >= 2);
    for (let i = 0; i < 5; i++) await tick();
    expect(frames).toEqual([
      [FrameType.Ping, FLAG_ACK, 0, 0xdeadbeef],
      [FrameType.Ping, FLAG_ACK, 0, 2],
    ]);
    expect(server.isClosed).toBe(false);
    raw.write(controlFrame(FrameType.Ping, 3, 9));
    await until(() => server.isClosed);
  });

  test('a /1 session (the release before /2) takes a PING as malformed and closes: why a caller PINGs only on /2', async () => {
    const { raw, accepted } = await pairs.connection();
    raw.on('error', () => undefined);
    let why: string | null = null;
    const server = new MuxSession(accepted as unknown as TLSSocket, { client: false, windowBytes: 65536, connectionWindowBytes: 1 << 20, maxStreams: 10, onClose: (w) => (why = w) });
    pairs.track(server);
    raw.write(controlFrame(FrameType.Ping, 0, 1));
    await until(() => server.isClosed);
    expect(why).toMatch(/unknown frame type 4/);
  });
});

describe('MuxSession keepalive (client)', () => {
  test('on /2, a PING every interval, each answered by the peer session: nothing closes, and one timer per session whatever its streams', async () => {
    const clock = new FakeClock();
    const limits: MuxLimit[] = [];
    const p = await pairs.pair({ client: { keepalive: KA, clock, onLimit: (l) => limits.push(l) }, pings: { client: true, server: true }, onStream: (st) => st.resume() });
    const streams = Array.from({ length: 8 }, () => p.client.open()!);
    for (const s of streams) s.write('x');
    await until(() => p.server.size === 8);
    expect(clock.pending()).toBe(1);
    for (let i = 0; i < 5; i++) {
      const before = p.raw.bytesRead;
      clock.advance(KA.intervalMs - (i === 0 ? 0 : KA.timeoutMs));
      // The peer's ACK comes back: 14 bytes.
      await until(() => p.raw.bytesRead >= before + FRAME_BYTES);
      clock.advance(KA.timeoutMs);
      for (let t = 0; t < 3; t++) await tick();
      expect(p.client.isClosed).toBe(false);
      expect(clock.pending()).toBe(1);
    }
    expect(limits).toEqual([]);
    expect(p.server.isClosed).toBe(false);
  });

  test('a peer that stops sending anything (a frozen path): closed at the timeout after a PING, counted, its streams failing as a lost connection', async () => {
    const { client, frames, clock, limits } = await clientOfRawPeer({ pings: true });
    const s = client.open()!;
    const errors: (Error & { code?: string })[] = [];
    s.on('error', (e) => errors.push(e));
    clock.advance(KA.intervalMs - 1);
    for (let t = 0; t < 3; t++) await tick();
    expect(pings(frames)).toEqual([]);
    clock.advance(1);
    await until(() => pings(frames).length === 1);
    expect(pings(frames)[0].slice(0, 3)).toEqual([FrameType.Ping, 0, 0]);
    clock.advance(KA.timeoutMs - 1);
    for (let t = 0; t < 3; t++) await tick();
    expect(client.isClosed).toBe(false);
    clock.advance(1);
    await until(() => client.isClosed);
    expect(limits).toEqual(['peer-keepalive-timeout']);
    expect(errors.map((e) => e.code)).toEqual(['ECONNRESET']);
    expect(clock.pending()).toBe(0);
  });

  test('any byte from the peer within the timeout will do, not only the ACK', async () => {
    const { client, peer, frames, clock, limits } = await clientOfRawPeer({ pings: true });
    for (let i = 0; i < 4; i++) {
      clock.advance(i === 0 ? KA.intervalMs : KA.intervalMs - KA.timeoutMs);
      await until(() => pings(frames).length === i + 1);
      // A window grant, never an ACK.
      const before = (client.socket as unknown as Socket).bytesRead;
      peer.write(controlFrame(FrameType.Window, 0, 1));
      await until(() => (client.socket as unknown as Socket).bytesRead > before);
      clock.advance(KA.timeoutMs);
      for (let t = 0; t < 3; t++) await tick();
      expect(client.isClosed).toBe(false);
    }
    expect(limits).toEqual([]);
  });

  test('bytes the peer sent in time but not read yet when the deadline fires (a turn that ran long) count', async () => {
    const { client, peer, frames, clock, limits } = await clientOfRawPeer({ pings: true });
    clock.advance(KA.intervalMs);
    await until(() => pings(frames).length === 1);
    // The peer's answer reaches the client's socket and, in the same turn, before the client
    // can read it, the deadline passes.
    const before = (client.socket as unknown as Socket).bytesRead;
    peer.write(controlFrame(FrameType.Ping, 0, pings(frames)[0][3], FLAG_ACK));
    clock.advance(KA.timeoutMs);
    expect((client.socket as unknown as Socket).bytesRead).toBe(before);
    for (let t = 0; t < 5; t++) await tick();
    expect(client.isClosed).toBe(false);
    expect(limits).toEqual([]);
  });

  test('on /1 (no PING known to the peer) nothing is sent and nothing closes', async () => {
    const { client, frames, clock, limits } = await clientOfRawPeer({ pings: false });
    const s = client.open()!;
    s.on('error', () => undefined);
    expect(clock.pending()).toBe(0);
    clock.advance(10 * KA.intervalMs);
    for (let t = 0; t < 5; t++) await tick();
    expect(frames.filter((f) => f[0] !== FrameType.Data)).toEqual([]);
    expect(client.isClosed).toBe(false);
    expect(limits).toEqual([]);
  });

  test('no PING after the session ends its side (GOAWAY, no streams): its timer goes', async () => {
    const { client, frames, clock } = await clientOfRawPeer({ pings: true });
    expect(clock.pending()).toBe(1);
    client.goAway();
    expect(clock.pending()).toBe(0);
    clock.advance(5 * KA.intervalMs);
    for (let t = 0; t < 5; t++) await tick();
    expect(pings(frames)).toEqual([]);
  });

  test('a server session never PINGs', async () => {
    const { raw, accepted } = await pairs.connection();
    const clock = new FakeClock();
    const server = new MuxSession(accepted as unknown as TLSSocket, { client: false, windowBytes: 65536, connectionWindowBytes: 1 << 20, maxStreams: 10, keepalive: KA, clock, onStream: (st) => st.on('error', () => undefined) });
    pairs.track(server);
    server.usePing();
    const frames = framesOf(raw);
    raw.write(frameHeader(FrameType.Data, 0, 1, 0));
    clock.advance(5 * KA.intervalMs);
    for (let t = 0; t < 5; t++) await tick();
    expect(clock.pending()).toBe(0);
    expect(frames).toEqual([]);
    expect(server.isClosed).toBe(false);
  });
});
