import type { Socket } from 'node:net';
import { H1Pool } from '../http/h1-pool.js';
import { connectPeer } from '../tls/connect-peer.js';
import { MuxSession, MUX_ALPN_2, MUX_ALPNS, type MuxLimit } from '../mux/mux-session.js';
import type { MuxStream } from '../mux/mux-stream.js';
import { MAX_PAYLOAD } from '../mux/frame.js';
import { meshIdleMs, type MeshH1PoolOptions } from './mesh-h1-pool.js';
import { ProxyError } from '../errors/proxy-error.js';
import { systemClock, type Clock, type Timer } from '../../common/clock.js';

/**
 * What a request body may have written to a virtual connection before the peer can have
 * shown it took it, beyond the stream's window (`windowBytes`: what it may send before the
 * peer's first grant): the stream's write buffer (its highWaterMark, 64 KiB) and one frame.
 */
const UNACCEPTED_SLACK_BYTES = 2 * MAX_PAYLOAD;

export interface MeshMuxPoolOptions extends MeshH1PoolOptions {
  /** Per-stream flow-control window (limits.http2InitialStreamWindowBytes). */
  readonly windowBytes: number;
  /** Connection-level window (limits.http2InitialConnectionWindowBytes). */
  readonly connectionWindowBytes: number;
  /** The pool carries HTTP/2 requests (protocol.meshHttp2 mux): H1PoolOptions.meshH2. */
  readonly meshH2?: boolean;
  /** The handshake deadline's and the keepalive's time (default: the system clock). */
  readonly clock?: Clock;
  /**
   * A limit that closed a session or a stream of it: counted as wren_limit_exceeded_total
   * {direction="outbound"} by the proxy, as the inbound counts its sessions'. What fires on
   * this side: `peer-keepalive-timeout` (the keepalive, MeshH1PoolOptions.keepalive,
   * limits.peerKeepalive: a PING every intervalMs, the session closed when nothing arrives
   * within timeoutMs of one, as PeerPool's HTTP/2 sessions; only on a session whose peer
   * chose `wren-mux/2`, an older peer knows no PING: TCP keepalive there),
   * `delayed-close-timeout` (the peer kept its half open after ours) and `mux-write-backlog`
   * (the peer stopped reading its connection). MuxSessionOptions.onLimit.
   */
  readonly onLimit?: (limit: MuxLimit) => void;
  /**
   * After the session ends its half of a stream or of the connection, the peer's time to end
   * its own (limits.delayedCloseTimeoutMs; 0: no bound; default the session's 1 s):
   * MuxSessionOptions.closeTimeoutMs.
   */
  readonly closeTimeoutMs?: number;
}

/**
 * HTTP/1.1 to peer sidecars on virtual connections multiplexed over one mTLS connection
 * per peer (config `protocol.meshHttp1: mux`, ALPN `wren-mux/2` or /1; proxy/mux). The HTTP/1.1
 * pool is the one `h1` uses, with the same bound per peer (its connections are streams
 * here) and the same exchange rules; what changes is that a turn's requests to a peer
 * leave in one TLS record and one write, and its responses arrive the same way.
 *
 * The session's TLS is PeerPool's (connectPeer): the workload certificate, the peer's
 * SPIFFE ID checked at the handshake (a stream fails with PEER_IDENTITY otherwise). After a
 * certificate rotation, the sessions made with the old certificate take no new stream
 * (GOAWAY) and close once their streams have.
 */
export function meshMuxPool(o: MeshMuxPoolOptions): H1Pool {
  const clock = o.clock ?? systemClock;
  const sessions = new Map<string, MuxSession>();
  /** Sessions whose handshake is done (the peer verified). */
  const ready = new WeakSet<MuxSession>();
  /** Streams opened during a session's handshake, told at its end by the session's one listener. */
  const handshaking = new WeakMap<MuxSession, MuxStream[]>();
  const keyOf = (host: string, port: number, identity: string): string => `${host}:${port}|${identity}`;
  /** The session to a peer that may still open streams (open, no GOAWAY), full or not. */
  const live = (key: string): MuxSession | undefined => {
    const s = sessions.get(key);
    return s === undefined || s.isClosed || s.goingAway ? undefined : s;
  };
  const session = (host: string, port: number, identity: string, timeoutMs: number): MuxSession => {
    const key = keyOf(host, port, identity);
    const known = live(key);
    if (known !== undefined && !known.full) return known;
    // wren-mux/2 (PING: the keepalive) first; a peer of an older release picks /1.
    const tls = connectPeer(o.tls, host, port, identity, MUX_ALPNS);
    // The handshake's deadline: the connect timeout of the request that opens the session,
    // as PeerPool bounds an HTTP/2 session's and Envoy its connections' (connect_timeout).
    // Each virtual connection timed out on its own before, but the session stayed pooled
    // while its handshake hung, and every later request joined it and timed out too: a peer
    // that accepted TCP and never finished TLS was never connected to again. Destroyed, it
    // fails its virtual connections with CONNECT_TIMEOUT (a connect failure, as on h1 and
    // h2) and the next request opens a new session.
    let deadline: Timer | null = null;
    if (timeoutMs > 0) {
      deadline = clock.setTimeout(() => {
        deadline = null;
        if (!ready.has(s)) s.destroy(new ProxyError('CONNECT_TIMEOUT', `${host}:${port} after ${timeoutMs} ms`));
      }, timeoutMs);
      deadline.unref?.();
    }
    const stopDeadline = (): void => {
      if (deadline !== null) clock.clearTimeout(deadline);
      deadline = null;
    };
    const s: MuxSession = new MuxSession(tls, {
      client: true,
      windowBytes: o.windowBytes,
      connectionWindowBytes: o.connectionWindowBytes,
      maxStreams: o.maxConnectionsPerPeer,
      // Kept open without streams as long as an idle virtual connection would be: when all
      // of its calls are cancelled the next one needs no new TLS handshake.
      idleTimeoutMs: meshIdleMs(o.idleTimeoutMs),
      closeTimeoutMs: o.closeTimeoutMs,
      keepalive: o.keepalive,
      clock,
      onLimit: o.onLimit,
      onClose: () => {
        stopDeadline();
        if (sessions.get(key) === s) sessions.delete(key);
      },
    });
    handshaking.set(s, []);
    tls.once('secureConnect', () => {
      stopDeadline();
      ready.add(s);
      // A peer of this release chose wren-mux/2: the session answers PINGs and sends its own.
      if (tls.alpnProtocol === MUX_ALPN_2) s.usePing();
      // A peer of an older release (wren-mux/1) takes no PING: TCP keepalive at least finds a
      // peer host gone (not a path that still acknowledges, as a frozen relay's).
      else if (o.keepalive !== undefined && o.keepalive.intervalMs > 0) tls.setKeepAlive(true, o.keepalive.intervalMs);
      o.onConnection?.();
      const waiting = handshaking.get(s)!;
      handshaking.delete(s);
      for (const st of waiting) st.emit('secureConnect');
    });
    sessions.set(key, s);
    return s;
  };
  // No onread: the pool's connection takes the stream's payloads directly (setDirectReads).
  const connect = (host: string, port: number, identity: string, _onread?: unknown, timeoutMs = o.connectTimeoutMs): Socket => {
    const sess = session(host, port, identity, timeoutMs);
    const stream = sess.open()!;
    // The pool waits for 'secureConnect' (the peer verified) before counting the connection up.
    // One listener per session, not per stream: a burst of streams during the handshake
    // would otherwise pile listeners on the TLS socket (node warns past 10).
    if (ready.has(sess)) process.nextTick(() => stream.emit('secureConnect'));
    else handshaking.get(sess)!.push(stream);
    return stream as unknown as Socket;
  };
  // A session that has learnt the peer's limit (a refusal) and is full: the request waits for
  // one of its streams, as an HTTP/2 stream beyond the peer's SETTINGS_MAX_CONCURRENT_STREAMS
  // waits in its session (RFC 9113 section 5.1.2), rather than going on a new session that
  // the peer limits as much (where a burst would be refused again).
  const room = (host: string, port: number, identity: string): boolean => {
    const s = live(keyOf(host, port, identity));
    return s === undefined || !s.full || !s.limitLearnt;
  };
  // A new virtual connection now waits for a session's handshake: none usable, or it is still
  // being established (the request is then pending, H1PoolOptions.sessionStreams).
  const connecting = (host: string, port: number, identity: string): boolean => {
    const s = live(keyOf(host, port, identity));
    return s === undefined || s.full || !ready.has(s);
  };
  const pool = new H1Pool({
    connect,
    room,
    // HTTP/2 (meshH2): a virtual connection stands for a stream; HTTP/1.1 keeps its connection slots (strictLimits).
    ...(o.meshH2 === true ? { sessionStreams: { connecting } } : {}),
    secure: true,
    maxSockets: o.maxConnectionsPerPeer,
    connectTimeoutMs: o.connectTimeoutMs,
    maxHeaderBytes: o.maxHeaderBytes,
    maxHeaderCount: o.maxHeaderCount,
    // The peer's stream limit is learnt from its refusals (mux-session.ts): a request it
    // refused, never processed, goes again with its body, as HTTP/2 streams beyond a peer's
    // SETTINGS wait instead of failing. The peer refuses at a stream's first DATA, before it
    // grants window or answers on it, and a stream sends at most its window before that
    // grant: so what it sent until the peer took it (MuxStream.accepted) is kept, at most
    // the window and the stream's write buffer, whatever the body's size. (16 KiB were kept
    // before: a refused call with a larger body failed.) Envoy keeps a body for retries up
    // to its buffer limit (1 MiB by default); the window is 1 MiB by default too.
    refusedReplayBytes: o.windowBytes + UNACCEPTED_SLACK_BYTES,
    meshH2: o.meshH2,
    idleTimeoutMs: meshIdleMs(o.idleTimeoutMs),
    onQueued: o.onQueued,
    onIdleTimeout: o.onIdleTimeout,
    onLimit: o.onResponseLimit,
    strictLimits: true,
    // Sessions outlive their last stream (idleTimeoutMs): closing the pool closes them.
    onDestroy: () => {
      for (const s of sessions.values()) s.goAway();
      sessions.clear();
    },
    // The peer is no longer in any cluster (outbound/endpoint-drain.ts): the pool has closed
    // its idle virtual connections, the session takes no new one (GOAWAY) and ends with its
    // last, as Envoy drains a removed host's HTTP/2 connections. It would otherwise stay up to
    // the idle timeout (an hour by default) with nothing to close it.
    onDrain: (host, port, peer) => {
      const key = keyOf(host, port, peer);
      const s = sessions.get(key);
      if (s === undefined) return;
      sessions.delete(key);
      s.goAway();
    },
  });
  o.tls.onRotate(() => {
    pool.retire();
    for (const s of sessions.values()) s.goAway();
    sessions.clear();
  });
  return pool;
}
