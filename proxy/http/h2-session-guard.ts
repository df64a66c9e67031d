import { constants, type Http2Session, type Http2Stream, type IncomingHttpHeaders, type ServerHttp2Session } from 'node:http2';
import type { Clock, Timer } from '../../common/clock.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = constants;

/** Names of the limits as counted in `wren_limit_exceeded_total{limit}`. */
export type LimitName =
  | 'request-headers-timeout'
  | 'idle-connection-timeout'
  | 'stream-idle-timeout'
  // A tunnel (opaque TCP, an upgrade after its 101) with no byte either way for limits.tcpIdleTimeoutMs.
  | 'tcp-idle-timeout'
  // A tunnel one side of which half-closed and whose other side did not close within 30 s (tcp-tunnel.ts).
  | 'tcp-half-close-timeout'
  // An HTTP/1.1 connection we ended whose client did not close its side in time (limits.delayedCloseTimeoutMs).
  | 'delayed-close-timeout'
  // A TLS handshake on the inbound mTLS listener not finished within limits.requestHeadersTimeoutMs.
  | 'tls-handshake-timeout'
  | 'max-connections'
  // A stream past limits.maxConcurrentStreams refused (REFUSED_STREAM): counted where Wren's own
  // code refuses it (the frame-level server, the mesh multiplexer's), and on node:http2's
  // servers when a stream it never announced went by while the limit's streams were open.
  | 'max-concurrent-streams'
  | 'premature-resets'
  | 'max-streams-per-caller'
  | 'peer-keepalive-timeout'
  // The frame-level server's flood guards (proxy/h2/h2-server-session.ts), nghttp2's limits:
  // answers (PING/SETTINGS ACKs, resets) a client does not read, a header block in more
  // CONTINUATION frames than nghttp2 takes, a SETTINGS frame of more than 32 entries, and
  // Envoy's: empty DATA frames in a row (CVE-2019-9518).
  | 'h2-unread-control-frames'
  | 'h2-continuation-flood'
  | 'h2-settings-flood'
  | 'h2-empty-frames-flood'
  // More 1xx before one final response than a client to an app or endpoint takes (h1/limits.ts MAX_INTERIM_RESPONSES).
  | 'interim-responses';

export interface H2GuardOptions {
  readonly clock: Clock;
  /** The connection's first stream, and every later header block once begun, must complete within this (0: off). */
  readonly headersTimeoutMs: number;
  /** A session with no open stream for this long is closed (0: off). */
  readonly idleTimeoutMs: number;
  /** A stream on which no frame moves for this long is reset with CANCEL (0: off). */
  readonly streamIdleTimeoutMs: number;
  /** Rapid-reset budget (CVE-2023-44487); null: none (the inbound's sidecar peers relay many callers' cancellations). */
  readonly prematureResets: { readonly totalStreamCount: number; readonly minStreamLifetimeMs: number } | null;
  readonly onLimit: (limit: LimitName) => void;
  /**
   * Streams nghttp2 opened and reset itself (RST_STREAM PROTOCOL_ERROR) before node announced
   * them, i.e. malformed requests (RFC 9113 section 8.1.1: an upper-case field name, a
   * connection-specific field, a pseudo-header out of place...) and heads over node's own
   * field cap: called once per run of them, with the connection's refusal reporter, so they
   * are counted and logged as the frame-level server's malformed streams are.
   */
  readonly onUnseenStreams?: () => void;
  /** SETTINGS_MAX_CONCURRENT_STREAMS as advertised: streams nghttp2 refused past it are that limit, not malformed. */
  readonly maxConcurrentStreams?: number;
}

interface Guard {
  readonly o: H2GuardOptions;
  /** Open streams (a Set costs one entry per stream; the guard needs them on socket loss). */
  readonly streams: Set<Http2Stream>;
  readonly session: ServerHttp2Session;
  active: number;
  /** Streams closed so far, and how many of them the client reset prematurely. */
  closed: number;
  premature: number;
  timer: Timer | null;
  /** What `timer` is for. */
  timerLimit: LimitName | null;
  /** When the session last went without open streams (the idle timer measures from it). */
  idleSince: number;
  sawStream: boolean;
  /** Highest stream id Node has announced with 'stream' (its header block is complete). */
  lastSeenId: number;
  /** Open streams once that one was announced: nghttp2 refuses a later stream for the concurrency limit only if they were that many. */
  activeAtSeen: number;
  /** A stream id whose header block nghttp2 has begun but not finished, and how many checks saw it so. */
  pendingId: number;
  pendingChecks: number;
  check: Timer | null;
  readonly onCheck: () => void;
}

const GUARDS = new WeakMap<Http2Session, Guard>();
const STARTED = Symbol('wren.streamStartedAt');
/** The guard rides on the stream: a destroyed stream no longer knows its session. */
const GUARD = Symbol('wren.sessionGuard');
type Guarded = Http2Stream & { [STARTED]?: number; [GUARD]?: Guard };

/**
 * What Node's HTTP/2 server leaves undone (issue 11, items 1, 4, 7):
 * - a session whose socket has closed is destroyed. Node's own socket 'close' handler
 *   only closes its streams with RST_STREAM, which can never be written to a closed
 *   socket, so the streams (and every buffer they hold) stay forever and shutdown waits
 *   for them;
 * - the first stream must open within the headers timeout, and any later header block
 *   must complete within it (a half-sent HEADERS frame holds nothing else), a session with no open stream closes after the idle timeout,
 *   and a stream on which nothing moves is reset after the stream idle timeout
 *   (Envoy's request_headers_timeout, idle_timeout and stream_idle_timeout);
 * - the premature-reset budget: Envoy's answer to HTTP/2 rapid reset. Once the
 *   connection has had `totalStreamCount` streams, or before that once half that many
 *   were reset, a connection where at least half the streams were reset (by RST_STREAM
 *   of any code, NO_ERROR included, before the response ended) within `minStreamLifetimeMs` of opening gets GOAWAY
 *   ENHANCE_YOUR_CALM and is closed. Only that connection pays: other callers' streams,
 *   and the shared sessions to peer sidecars, go on.
 */
export function guardH2Session(session: ServerHttp2Session, o: H2GuardOptions): void {
  const g: Guard = {
    o,
    session,
    streams: new Set(),
    active: 0,
    closed: 0,
    premature: 0,
    timer: null,
    timerLimit: null,
    idleSince: 0,
    sawStream: false,
    lastSeenId: 0,
    activeAtSeen: 0,
    pendingId: 0,
    pendingChecks: 0,
    check: null,
    onCheck: () => checkHeaderBlock(g),
  };
  GUARDS.set(session, g);
  const gone = () => {
    unseenBefore(g, 0);
    clearAll(g);
    if (!session.destroyed) session.destroy();
    // A destroyed session can still hold streams Node failed to let go of (their RST
    // could not be written): destroy them too, so their buffers and upstreams are freed.
    for (const st of streamsOf(g)) if (!st.destroyed) st.destroy();
  };
  // HTTP/2 has no half-closed connection: after the peer's FIN nothing (no WINDOW_UPDATE,
  // no RST_STREAM) can arrive, so streams blocked on flow control could never finish.
  session.socket.once('end', gone);
  session.socket.once('close', gone);
  // A client leaving with GOAWAY (nghttp, curl): node closes the session on it, and its
  // last processed stream id goes with it, before the socket ends.
  session.once('goaway', () => unseenBefore(g, 0));
  session.once('close', () => clearAll(g));
  session.on('error', onSessionError);
  arm(g, o.headersTimeoutMs, 'request-headers-timeout');
  armCheck(g);
  session.on('stream', onStream);
}

/**
 * Node announces a stream only once its header block is complete, and nghttp2 accepts no
 * other frame on the connection while a block is open (RFC 9113 §6.10), so a HEADERS
 * frame without END_HEADERS and no CONTINUATION holds the connection silently. nghttp2's
 * last processed stream id moves when a block begins (on_begin_headers): a last id above
 * the last announced stream, unchanged over three checks half a headers timeout apart,
 * is a block open for between 1 and 1.5 headers timeouts. One timer per connection, no
 * per-byte or per-frame work; CONTINUATION frames dripped slowly are caught too. (A stream
 * nghttp2 began but rejected as malformed also looks open until a later stream opens:
 * such a connection is closed after the headers timeout, as Envoy closes a connection
 * on a malformed request by default.)
 */
function checkHeaderBlock(g: Guard): void {
  g.check = null;
  const s = g.session;
  if (s.destroyed || s.closed) return;
  const id = s.state.lastProcStreamID ?? 0;
  if (id <= g.lastSeenId) g.pendingId = 0;
  else if (id !== g.pendingId) {
    g.pendingId = id;
    g.pendingChecks = 1;
  } else if (++g.pendingChecks >= 3) {
    g.o.onLimit('request-headers-timeout');
    clear(g);
    s.close();
    s.destroy();
    return;
  }
  armCheck(g);
}

function armCheck(g: Guard): void {
  const ms = g.o.headersTimeoutMs;
  if (ms <= 0) return;
  g.check = g.o.clock.setTimeout(g.onCheck, Math.ceil(ms / 2));
  g.check.unref?.();
}

function onStream(this: ServerHttp2Session, stream: Http2Stream, headers: IncomingHttpHeaders): void {
  const g = GUARDS.get(this);
  if (!g) return;
  const id = stream.id ?? 0;
  // Node announces a read's streams in order, so odd ids skipped since the last one were
  // opened by nghttp2 and reset by it (a client's ids go up by two: RFC 9113 section
  // 5.1.1 lets it skip some, which no client does; a run counts once, so skipping cannot
  // make counts or log lines out of nothing).
  if (id > g.lastSeenId + 2) unseenBefore(g, id);
  g.active++;
  g.streams.add(stream);
  g.sawStream = true;
  if (id > g.lastSeenId) {
    g.lastSeenId = id;
    g.activeAtSeen = g.active;
  }
  // The idle timer stays armed while streams come and go (no timer per request): when it
  // fires it finds the session busy, or idle for less than the timeout, and acts on that.
  if (g.timerLimit === 'request-headers-timeout') clear(g);
  (stream as Guarded)[GUARD] = g;
  if (g.o.prematureResets) (stream as Guarded)[STARTED] = g.o.clock.now();
  // A CONNECT stream (RFC 9113 section 8.5) is an opaque TCP connection between sidecars, not a
  // request: it lives as long as its ends keep it (docs/resilience.md), as Envoy's tcp_proxy is
  // not bound by the HTTP stream_idle_timeout. An extended CONNECT (RFC 8441, an upgrade) is a
  // request until its 101: writeH2Switch lifts the timeout there.
  if (g.o.streamIdleTimeoutMs > 0 && (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== undefined)) {
    stream.setTimeout(g.o.streamIdleTimeoutMs);
    stream.on('timeout', onStreamTimeout);
  }
  // `on`, not `once` (no wrapper closure per stream): 'close' comes once, and release-on-close.ts drops it.
  stream.on('close', onStreamClose);
}

/**
 * Streams nghttp2 opened since the last one node announced and never announced itself
 * (their ids below `next`, or, with `next` 0, as the connection ends: up to nghttp2's last
 * processed stream id): reset by nghttp2 as malformed, or refused past the concurrency
 * limit while that many were open. A header block still open as the client leaves looks
 * the same and is counted too; one the headers timeout closed was counted as that.
 */
function unseenBefore(g: Guard, next: number): void {
  const s = g.session;
  if (next === 0) {
    if (s.destroyed) return;
    const last = s.state.lastProcStreamID ?? 0;
    if (last <= g.lastSeenId) return;
    g.lastSeenId = last;
  }
  // Refused past the limit (REFUSED_STREAM) only if the streams open when the last one was
  // announced were the limit's: none opened since (node announced none), some may have closed.
  const max = g.o.maxConcurrentStreams;
  if (max !== undefined && g.activeAtSeen >= max) g.o.onLimit('max-concurrent-streams');
  else g.o.onUnseenStreams?.();
}

/** nghttp2's own flood errors (nghttp2.h): the frame-level server's limits of the same name. */
const NGHTTP2_ERR_FLOODED = -904;
const NGHTTP2_ERR_TOO_MANY_CONTINUATIONS = -905;

/**
 * node:http2 ends a session for the floods nghttp2 and node guard against themselves, with
 * an 'error' and nothing else: counted here under the limits the frame-level server
 * (proxy/h2/h2-server-session.ts) counts for the same floods, so a flood shows the same on
 * every listener. Answers a client does not read (PING and SETTINGS ACKs, RST_STREAMs:
 * nghttp2's NGHTTP2_ERR_FLOODED, CVE-2019-9512/9515), a header block in too many
 * CONTINUATION frames (CVE-2024-27316), and node's invalid-frame cap (maxSessionInvalidFrames,
 * 1000), which empty DATA frames in a row hit (CVE-2019-9518). Other errors are the
 * connection's own, not a limit.
 */
function onSessionError(this: ServerHttp2Session, err: unknown): void {
  const g = GUARDS.get(this);
  if (g === undefined) return;
  const e = err as { code?: unknown; errno?: unknown } | null;
  if (e?.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') g.o.onLimit('h2-empty-frames-flood');
  else if (e?.errno === NGHTTP2_ERR_FLOODED) g.o.onLimit('h2-unread-control-frames');
  else if (e?.errno === NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) g.o.onLimit('h2-continuation-flood');
}

function onStreamTimeout(this: Http2Stream): void {
  const g = (this as Guarded)[GUARD];
  g?.o.onLimit('stream-idle-timeout');
  if (!this.closed) this.close(NGHTTP2_CANCEL);
}

function onStreamClose(this: Http2Stream): void {
  const g = (this as Guarded)[GUARD];
  if (!g) return;
  g.active--;
  g.streams.delete(this);
  g.closed++;
  const budget = g.o.prematureResets;
  if (budget) {
    const started = (this as Guarded)[STARTED] ?? 0;
    // `aborted`: the stream closed before our response ended, i.e. the client reset it,
    // whatever the code: RST_STREAM(NO_ERROR) cancels a request as well as CANCEL does
    // (RFC 9113 §6.4; Envoy's premature-reset count does not look at the code either).
    if ((this.aborted || this.rstCode !== NGHTTP2_NO_ERROR) && g.o.clock.now() - started < budget.minStreamLifetimeMs) g.premature++;
    const limit = budget.totalStreamCount;
    if (g.premature * 2 >= (g.closed < limit ? limit : g.closed)) return tooManyResets(g);
  }
  if (g.active === 0) {
    g.idleSince = g.o.clock.now();
    if (g.timer === null) arm(g, g.o.idleTimeoutMs, 'idle-connection-timeout');
  }
}

function tooManyResets(g: Guard): void {
  const s = g.session;
  if (s.destroyed || s.closed) return;
  g.o.onLimit('premature-resets');
  clearAll(g);
  // GOAWAY tells the client why; the connection is then dropped with whatever it still holds.
  s.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
  s.close();
  setImmediate(() => s.destroyed || s.destroy());
}

function streamsOf(g: Guard): Http2Stream[] {
  return [...g.streams];
}

function arm(g: Guard, ms: number, limit: LimitName): void {
  if (ms <= 0 || g.session.destroyed || g.session.closed) return;
  if (limit === 'request-headers-timeout' && g.sawStream) return;
  g.timerLimit = limit;
  g.timer = g.o.clock.setTimeout(() => {
    g.timer = null;
    g.timerLimit = null;
    if (g.active > 0 || g.session.destroyed) return;
    if (limit === 'idle-connection-timeout') {
      // Streams came and went since it was armed: idle for less than the timeout so far.
      const left = g.idleSince + g.o.idleTimeoutMs - g.o.clock.now();
      if (left > 0) return arm(g, left, limit);
      unseenBefore(g, 0);
    }
    g.o.onLimit(limit);
    g.session.close();
    g.session.destroy();
  }, ms);
  g.timer.unref?.();
}

function clear(g: Guard): void {
  if (g.timer) g.o.clock.clearTimeout(g.timer);
  g.timer = null;
  g.timerLimit = null;
}

function clearAll(g: Guard): void {
  clear(g);
  if (g.check) g.o.clock.clearTimeout(g.check);
  g.check = null;
}
