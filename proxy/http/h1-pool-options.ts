/**
 * The HTTP/1.1 pool's options and the cluster limits a request brings to it (h1-pool.ts).
 * Apart so that the pool, its connections (h1-pool-conn.ts) and its exchanges
 * (h1-pool-exchange.ts) can all name them without importing one another.
 */

import type { OnReadOpts, Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';

export interface H1PoolOptions {
  /** Connections per origin (host:port); requests beyond it wait for one to be free. */
  readonly maxSockets?: number;
  /**
   * Idle connections close after this long; a server's `Keep-Alive: timeout=N` hint replaces
   * it for that connection, less 1 s of margin, up to maxIdleTimeoutMs.
   */
  readonly idleTimeoutMs?: number;
  /**
   * The longest a server's keep-alive hint may keep an idle connection (undici's
   * keepAliveMaxTimeout). Default: idleTimeoutMs, so a hint only shortens it.
   */
  readonly maxIdleTimeoutMs?: number;
  /** The idle timeout's time (default: the system clock). */
  readonly clock?: Clock;
  readonly maxHeaderBytes?: number;
  /** Fields in a response head or trailer section (default: the codec's, 100). */
  readonly maxHeaderCount?: number;
  /**
   * A request body up to this many bytes is kept, as sent, until its response starts or the
   * connection shows the peer took it (a mux stream's `accepted`), so a request whose
   * virtual connection the peer refused (proxy/mux: over its stream limit, never processed)
   * goes again whole, body included (default 0: only bodyless ones go again).
   */
  readonly refusedReplayBytes?: number;
  /**
   * The requests are HTTP/2 ones carried to a peer sidecar (protocol.meshHttp2 mux). In
   * HTTP/2 a content-length is the sender's to give (END_STREAM frames the message); here
   * the head's frames the HTTP/1.1 message, and the sender's own, if any, travels in
   * `wren-content-length` both ways. So a request with a body goes chunked, and its
   * trailers can follow (HTTP/1.1 has them only in a chunked body).
   */
  readonly meshH2?: boolean;
  /**
   * Opens a connection (default: plain TCP). The mesh pool passes a TLS connect that
   * verifies the peer sidecar's SPIFFE ID (outbound/mesh-h1-pool.ts); `secure` says the
   * socket is a TLSSocket, ready at 'secureConnect'. It should pass `onread` on to
   * net.connect / tls.connect (the pool then reads into its own buffer, without 'data'
   * events); a socket that emits 'data' instead works too. `timeoutMs` is the connection's
   * connect timeout (the mesh multiplexer bounds its session's handshake by it).
   */
  readonly connect?: (host: string, port: number, peer: string, onread?: OnReadOpts, timeoutMs?: number) => Socket;
  /**
   * Whether the transport takes another connection to host:port now (default: always, up to
   * maxSockets). The mesh multiplexer says no once the peer's stream limit is learnt and
   * reached: the request waits for one of the origin's connections, as at maxSockets.
   */
  readonly room?: (host: string, port: number, peer: string) => boolean;
  readonly secure?: boolean;
  /** Connect timeout (0: none); a request's `waitMs` (the cluster's connect timeout) overrides it. */
  readonly connectTimeoutMs?: number;
  /** A connection was established (the peer-connection metric). */
  readonly onConnection?: () => void;
  /** A request found `maxSockets` connections busy and waits for one (the bound's metric). */
  readonly onQueued?: () => void;
  /** An idle connection was closed by the idle timeout (its metric). */
  readonly onIdleTimeout?: () => void;
  /** A server sent more interim (1xx) responses to one request than MAX_INTERIM_RESPONSES (h1/limits.ts): wren_limit_exceeded_total. */
  readonly onLimit?: (limit: 'interim-responses') => void;
  /** destroy() was called: whatever carries the connections (the mesh multiplexer's sessions) closes too. */
  readonly onDestroy?: () => void;
  /** drain() was called for an origin: what carries its connections (a multiplexer session) drains too. */
  readonly onDrain?: (host: string, port: number, peer: string) => void;
  /**
   * Cluster limits as the mesh's HTTP/2 sessions apply them (outbound/mesh-h1-pool.ts): a
   * new connection needs a connection slot (no first connection beyond the limit), and a
   * request waiting for its new connection to come up is a pending request (Envoy counts
   * a request pending until a connection is ready for it).
   */
  readonly strictLimits?: boolean;
  /**
   * The connections are streams of a session to the peer (the mesh multiplexer carrying
   * HTTP/2): a request's cluster limits take no connection slot for them, and a request
   * waiting for one is not pending (it waits as an HTTP/2 stream waits in its session). It
   * is pending only while the session it needs is being established (`connecting`: a new
   * connection now would wait for a session's handshake), as a request waiting for a peer
   * session is (docs/resilience.md, "Connection limits").
   */
  readonly sessionStreams?: { connecting(host: string, port: number, peer: string): boolean };
}

/** A slot of a limit, given back once (proxy/resilience/concurrency-limits.ts Admission). */
export interface Slot {
  release(): void;
}

/**
 * The connection limits of the cluster a request goes to (its ClusterHandle): Envoy's
 * max_connections bounds an HTTP/1.1 pool's connections, max_pending_requests the requests
 * waiting for one. `waitMs` bounds that wait (the cluster's connect timeout).
 */
export interface H1Limits {
  admitConnection(kind: 'connections' | 'pending'): Slot | Error;
}

/**
 * What the layers above an attempt are told of its wait for a connection (the per-try
 * timers: layers/request-state.ts ResilienceState): the exchange waits for one (a new
 * connection coming up, its TLS handshake, or a busy origin's to be free), then has one.
 */
export interface ConnectionWait {
  waitsForConnection(): void;
  connected(): void;
}
