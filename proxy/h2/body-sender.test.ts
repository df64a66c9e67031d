import { BodySender, flushBlocked, type SendHost } from './body-sender.js';
import type { FrameWriter } from './frame-writer.js';
import type { Headers } from '../http/headers.js';

/**
 * BodySender: a stream's body under the stream window, the connection window and the
 * peer's frame size (RFC 9113 sections 4.2, 5.2, 6.9), what does not fit queued in order
 * until window comes back, and the end carried by the last DATA frame, the trailers, or an
 * empty DATA frame. The session and its writer are fakes recording the frames; the two
 * streams' own tests (h2-server-session.test.ts, app-h2-client.test.ts, h2-client-adversary.test.ts)
 * drive it over real sockets.
 */

type Sent = ['data', string, boolean] | ['trailers', Headers];

class Host implements SendHost {
  sendWindow: number;
  peerMaxFrame = 16_384;
  readonly sent: Sent[] = [];
  readonly blockedBy: BodySender[] = [];
  /** As the sessions' blockedStreams. */
  readonly blockedSet = new Set<BodySender>();
  readonly out = {
    data: (id: number, data: Buffer, endStream: boolean) => this.sent.push(['data', data.toString(), endStream]),
    trailers: (id: number, t: Headers) => this.sent.push(['trailers', t]),
  } as unknown as FrameWriter;

  constructor(connectionWindow: number) {
    this.sendWindow = connectionWindow;
  }

  blocked(st: BodySender): void {
    this.blockedBy.push(st);
    this.blockedSet.add(st);
  }
}

class Stream extends BodySender {
  readonly id = 1;
  closed = false;
  localEnded = false;
  drains = 0;
  trailers: Headers | undefined = undefined;

  constructor(
    readonly session: Host,
    public sendWindow: number,
  ) {
    super();
  }

  protected outgoingTrailers(): Headers | undefined {
    return this.trailers;
  }

  protected localEnd(): void {
    this.localEnded = true;
  }

  protected drained(): void {
    this.drains++;
  }
}

const b = (s: string): Buffer => Buffer.from(s);

test('within the windows: DATA frames no larger than the peer\'s frame size, END_STREAM on the last, both windows charged', () => {
  const host = new Host(100);
  host.peerMaxFrame = 4;
  const st = new Stream(host, 50);
  expect(st.write(b('abcdefghij'), true)).toBe(true);
  expect(host.sent).toEqual([
    ['data', 'abcd', false],
    ['data', 'efgh', false],
    ['data', 'ij', true],
  ]);
  expect([st.sendWindow, host.sendWindow, st.localEnded]).toEqual([40, 90, true]);
});

test('short of window: what fits goes, the rest and later chunks wait in order, and the end after them; flush() sends them as window comes back', () => {
  const host = new Host(100);
  const st = new Stream(host, 3);
  expect(st.write(b('abcde'), false)).toBe(false);
  expect(st.write(b('fg'), false)).toBe(false);
  expect(st.write(b(''), true)).toBe(false);
  expect(host.sent).toEqual([['data', 'abc', false]]);
  expect(host.blockedBy).toEqual([st]);
  // Some window: part of what waits, in order; still blocked.
  st.sendWindow += 3;
  st.flush();
  expect(host.sent.slice(1)).toEqual([
    ['data', 'de', false],
    ['data', 'f', false],
  ]);
  expect([st.drains, st.localEnded, host.blockedBy.length]).toEqual([0, false, 2]);
  // The connection's window is short now: the stream's own is not enough.
  st.sendWindow += 100;
  host.sendWindow = 0;
  st.flush();
  expect(host.sent.length).toBe(3);
  host.sendWindow = 10;
  st.flush();
  expect(host.sent.slice(3)).toEqual([['data', 'g', true]]);
  expect([st.drains, st.localEnded]).toEqual([1, true]);
  // Nothing waits any more: another flush() does nothing.
  st.flush();
  expect([host.sent.length, st.drains]).toEqual([4, 1]);
});

test('trailers carry the end: the last DATA frame goes without END_STREAM, then one HEADERS with it (RFC 9113 section 8.1)', () => {
  const host = new Host(100);
  const st = new Stream(host, 100);
  st.trailers = { 'grpc-status': '0' };
  st.write(b('x'), false);
  st.write(b('yz'), true);
  expect(host.sent).toEqual([
    ['data', 'x', false],
    ['data', 'yz', false],
    ['trailers', { 'grpc-status': '0' }],
  ]);
});

test('an empty last chunk: an empty DATA frame with END_STREAM; empty trailers count as none', () => {
  const host = new Host(100);
  const st = new Stream(host, 100);
  st.trailers = {};
  st.write(b('a'), false);
  st.write(Buffer.alloc(0), true);
  expect(host.sent).toEqual([
    ['data', 'a', false],
    ['data', '', true],
  ]);
  // The end goes once.
  st.write(Buffer.alloc(0), true);
  expect(host.sent.length).toBe(2);
});

test('a closed stream sends nothing, and what waited is not sent when window comes back', () => {
  const host = new Host(100);
  const st = new Stream(host, 0);
  expect(st.write(b('abc'), true)).toBe(false);
  st.closed = true;
  st.sendWindow = 100;
  st.flush();
  expect(st.write(b('d'), true)).toBe(false);
  expect(host.sent).toEqual([]);
  expect(st.drains).toBe(0);
});

test('flushBlocked: window came back, the blocked streams send in the order they blocked while the connection has window; one short of its own stays blocked', () => {
  const host = new Host(0);
  const [s1, s2, s3] = [new Stream(host, 10), new Stream(host, 0), new Stream(host, 10)];
  expect(s1.write(b('aaaa'), true)).toBe(false);
  expect(s2.write(b('bb'), true)).toBe(false);
  expect(s3.write(b('cccc'), true)).toBe(false);
  expect([...host.blockedSet]).toEqual([s1, s2, s3]);
  // Enough connection window for s1's body and half of s3's; s2 waits for its own window.
  host.sendWindow = 6;
  flushBlocked(host, host.blockedSet);
  expect(host.sent).toEqual([
    ['data', 'aaaa', true],
    ['data', 'cc', false],
  ]);
  expect([...host.blockedSet]).toEqual([s2, s3]);
  host.sendWindow = 100;
  flushBlocked(host, host.blockedSet);
  expect(host.sent.slice(2)).toEqual([['data', 'cc', true]]);
  expect([...host.blockedSet]).toEqual([s2]);
  s2.sendWindow = 10;
  flushBlocked(host, host.blockedSet);
  expect(host.sent.slice(3)).toEqual([['data', 'bb', true]]);
  expect(host.blockedSet.size).toBe(0);
});
