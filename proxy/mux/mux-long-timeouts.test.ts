import type { TLSSocket } from 'node:tls';
import { MuxSession, type MuxLimit } from './mux-session.js';
import { MuxTestPairs } from './mux-test-pair.js';

/**
 * The multiplexer's timers get their durations from the config (limits.idleConnectionTimeoutMs,
 * requestHeadersTimeoutMs, delayedCloseTimeoutMs), which takes any duration: "720h" is a
 * practically-off idle timeout an operator may well write (common/clock.ts LongTimer, and
 * test/timer-*-overflow.test.ts for the other timers). The sessions and streams armed Node's
 * setTimeout with it directly, and Node fires a delay past 2^31-1 ms (24.8 days) after 1 ms:
 * an inbound multiplexed connection was closed as idle (or as having opened no stream) a
 * millisecond after it was accepted, and a stream whose FIN was sent was reset a millisecond
 * later. No event marks "not fired": each case waits 50 times the 1 ms Node would have used.
 */
const pairs = new MuxTestPairs();
const H720 = 720 * 3_600_000;

afterAll(() => pairs.close());

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a server session with a 720h idle and first-stream timeout keeps a connection that has opened no stream', async () => {
  const { raw, accepted } = await pairs.connection();
  const limits: MuxLimit[] = [];
  const srv = new MuxSession(accepted as unknown as TLSSocket, {
    client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10,
    idleTimeoutMs: H720, firstStreamTimeoutMs: H720, onLimit: (l) => limits.push(l),
  });
  pairs.track(srv);
  raw.on('data', () => undefined);
  await wait(50);
  expect({ limits, closed: srv.isClosed, goingAway: srv.goingAway }).toEqual({ limits: [], closed: false, goingAway: false });
  raw.destroy();
});

test("a stream whose FIN was sent waits for the peer's with a 720h close timeout", async () => {
  const limits: MuxLimit[] = [];
  const p = await pairs.pair({ closeTimeoutMs: H720, onLimit: (l) => limits.push(l), onStream: () => undefined });
  const a = p.client.open()!;
  let closed = false;
  a.on('close', () => (closed = true));
  a.end('x');
  await wait(50);
  expect({ limits, closed, destroyed: a.destroyed }).toEqual({ limits: [], closed: false, destroyed: false });
});
