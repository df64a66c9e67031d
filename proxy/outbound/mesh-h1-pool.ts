import type { OnReadOpts, Socket } from 'node:net';
import { H1Pool } from '../http/h1-pool.js';
import { connectPeer } from '../tls/connect-peer.js';
import type { TlsIdentity } from '../tls/tls-identity.js';

export interface MeshH1PoolOptions {
  readonly tls: TlsIdentity;
  /** mTLS connections per peer sidecar (protocol.meshHttp1MaxConnectionsPerPeer). */
  readonly maxConnectionsPerPeer: number;
  /** Default connect timeout (a request's cluster connect timeout overrides it), as PeerPool's. */
  readonly connectTimeoutMs: number;
  /** A response's head, and its trailer section (H1PoolOptions). */
  readonly maxHeaderBytes: number;
  readonly maxHeaderCount?: number;
  /**
   * An idle connection closes after this long (0: never). The listeners' idle timeout
   * (limits.idleConnectionTimeoutMs, Envoy's idle_timeout: 1 h), which the peer's inbound
   * applies to the same connection.
   */
  readonly idleTimeoutMs: number;
  readonly onConnection?: () => void;
  /**
   * limits.peerKeepalive. On `h1` (one exchange per TLS connection, no framing to carry a
   * PING): TCP keepalive on each connection, its idle time intervalMs (then the kernel's
   * probes, 1 s apart, 10 of them: libuv's), which finds a peer host gone or a path that
   * drops everything. A path that still acknowledges (a frozen relay) it cannot see: those
   * are caught by the request's timeouts and limits.streamIdleTimeoutMs only, as on Envoy's
   * HTTP/1 upstreams. The mux pool PINGs instead (mesh-mux-pool.ts).
   */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
  /** A request waits because every connection to its peer is busy (the per-peer bound fired). */
  readonly onQueued?: () => void;
  /** An idle connection was closed by the idle timeout. */
  readonly onIdleTimeout?: () => void;
  /**
   * A peer's response broke a per-request limit of the pool (more 1xx than
   * MAX_INTERIM_RESPONSES: H1PoolOptions.onLimit): wren_limit_exceeded_total
   * {direction="outbound"}, as the other upstreams count it.
   */
  readonly onResponseLimit?: (limit: 'interim-responses') => void;
}

/** Node's timers stop at 2^31 - 1 ms (24.8 days): "never" is that. */
const NEVER_MS = 2 ** 31 - 1;

/**
 * The client side closes 1 s before the peer would (both sides count from the last
 * exchange; the peer's clock starts when it writes the response, ours when we read it), so
 * a request is never sent on a connection the peer is closing. Envoy's cluster
 * idle_timeout defaults to the same hour as its listeners'.
 */
export function meshIdleMs(ms: number): number {
  return ms <= 0 ? NEVER_MS : Math.max(1, ms - 1000);
}

/**
 * HTTP/1.1 to peer sidecars over a bounded pool of mutual-TLS connections per peer, one
 * exchange at a time on each (Istio's default for HTTP/1.1 between sidecars; config
 * `protocol.meshHttp1: h1`). The TLS is PeerPool's: the workload's certificate and trust
 * bundle (the same rotating secure context), the peer must present exactly the SPIFFE ID
 * the endpoint advertises (PEER_IDENTITY otherwise), the same connect timeout; it offers
 * ALPN `http/1.1`, which the peer's inbound listener serves through its mTLS stack.
 *
 * After a certificate rotation no new request goes out on a connection made with the
 * old certificate: idle ones close at once, busy ones after their exchange.
 */
export function meshH1Pool(o: MeshH1PoolOptions): H1Pool {
  const keepaliveMs = o.keepalive !== undefined && o.keepalive.intervalMs > 0 ? o.keepalive.intervalMs : 0;
  const connect = (host: string, port: number, identity: string, onread?: OnReadOpts): Socket => {
    const s = connectPeer(o.tls, host, port, identity, 'http/1.1', onread);
    // Once per connection, never per request; kept by node until the socket connects.
    if (keepaliveMs > 0) s.setKeepAlive(true, keepaliveMs);
    return s;
  };
  const pool = new H1Pool({
    connect,
    secure: true,
    maxSockets: o.maxConnectionsPerPeer,
    connectTimeoutMs: o.connectTimeoutMs,
    maxHeaderBytes: o.maxHeaderBytes,
    idleTimeoutMs: meshIdleMs(o.idleTimeoutMs),
    onConnection: o.onConnection,
    onQueued: o.onQueued,
    onIdleTimeout: o.onIdleTimeout,
    onLimit: o.onResponseLimit,
    strictLimits: true,
  });
  o.tls.onRotate(() => pool.retire());
  return pool;
}
