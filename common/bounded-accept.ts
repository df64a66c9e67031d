import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { Clock, Timer } from './clock.js';

/** The two bounds the admin and metrics ports share with the data-path listeners (config `limits`). */
export interface AcceptLimits {
  /** The request head must arrive within this from accept, or from the previous response's end (0: off). */
  readonly requestHeadersTimeoutMs: number;
  /** Open connections; more are destroyed at accept. */
  readonly maxConnectionsPerListener: number;
}

export type AcceptLimit = 'max-connections' | 'request-headers-timeout';

/**
 * A plain listener handing its connections to a node:http server, with the bounds node's
 * server lacks or keeps coarse: a connection cap (node's has none by default) and a
 * request-head timeout on the owner's clock (node's headersTimeout is 60 s, checked every
 * 30 s, and counted nowhere). Each is counted by `onLimit` when it fires, as Envoy's
 * max_downstream_connections and request_headers_timeout are in its listener stats.
 * Used by the metrics port (pod IP) and the admin port (localhost, but every container of
 * the pod shares that loopback: without a cap, any of them could hold as many sockets as
 * the process may open, and the data path's accepts would then fail), and by the control
 * plane's admin port (the pod's addresses; control-plane/admin-server.ts DEFAULT_ADMIN_LIMITS).
 */
export class BoundedAccept {
  readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly http: HttpServer,
    private readonly limits: AcceptLimits,
    private readonly clock: Clock,
    private readonly onLimit: (limit: AcceptLimit) => void,
  ) {
    this.server = createServer({ noDelay: true }, (s) => this.accept(s));
  }

  private accept(socket: Socket): void {
    if (this.sockets.size >= this.limits.maxConnectionsPerListener) {
      this.onLimit('max-connections');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    this.awaitHead(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.disarm(socket as SocketWithTimer);
    });
    this.http.emit('connection', socket);
  }

  /** The socket waits for a request head (from accept, or a keep-alive connection's next one): it must come within the timeout. */
  awaitHead(socket: Socket): void {
    const ms = this.limits.requestHeadersTimeoutMs;
    if (ms <= 0 || socket.destroyed || (socket as SocketWithTimer)[HEADERS_TIMER] !== undefined) return;
    (socket as SocketWithTimer)[HEADERS_TIMER] = this.clock.setTimeout(() => {
      (socket as SocketWithTimer)[HEADERS_TIMER] = undefined;
      this.onLimit('request-headers-timeout');
      socket.destroy();
    }, ms);
  }

  /** A request head has arrived on the socket (its request is being served): the timer stops. */
  headArrived(socket: Socket): void {
    const s = socket as SocketWithTimer;
    s[IN_FLIGHT] = (s[IN_FLIGHT] ?? 0) + 1;
    this.disarm(s);
  }

  /**
   * A response on a keep-alive connection is done: once none is in flight (node answers
   * pipelined requests in turn), the next request head must arrive within the timeout too,
   * as Envoy's request_headers_timeout applies to each request, not only the first.
   */
  responseDone(socket: Socket): void {
    const s = socket as SocketWithTimer;
    s[IN_FLIGHT] = Math.max(0, (s[IN_FLIGHT] ?? 1) - 1);
    if (s[IN_FLIGHT] === 0) this.awaitHead(socket);
  }

  private disarm(s: SocketWithTimer): void {
    const t = s[HEADERS_TIMER];
    if (t !== undefined) this.clock.clearTimeout(t);
    s[HEADERS_TIMER] = undefined;
  }

  /** Destroys every open connection (the server itself is closed by its owner). */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}

const HEADERS_TIMER = Symbol('headers-timer');
const IN_FLIGHT = Symbol('requests-in-flight');
type SocketWithTimer = Socket & { [HEADERS_TIMER]?: Timer; [IN_FLIGHT]?: number };
