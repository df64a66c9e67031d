import type { Socket } from 'node:net';
import { inTurn } from '../../common/deferred.js';
import type { HttpService, ProxyRequest, ProxyResponse } from './exchange.js';
import type { ProxyError } from '../errors/proxy-error.js';
import { dropMeshFields, MESH, type Headers } from './headers.js';
import { H1ResponseWriter } from './write-response.js';
import { serveUpgrade } from './h1-upgrade-server.js';
import type { SpliceIdle } from '../net/tcp-tunnel.js';
import { withoutH2c } from './upgrade-protocols.js';
import { H2_HEADER_HARD_CAP_FACTOR, H2_SERVER_MAX_FIELDS } from './h2-server.js';
import { H1Connection, type H1ConnectionOptions, type H1ServerExchange, type H1TimerLimit } from '../h1/h1-connection.js';
import { fieldsToHeaders, type H1Head } from '../h1/head.js';
import { H1Error } from '../h1/h1-error.js';
import { DEFAULT_H1_LIMITS, type H1Limits } from '../h1/limits.js';
import { errorResponse } from '../errors/error-response.js';
import type { Clock, Timer } from '../../common/clock.js';
import { Cancel, type CancelSignal } from '../../common/cancel.js';
import { LiveSet, type LiveEntry } from '../../common/live-set.js';

export interface H1ServerOptions {
  readonly service: HttpService;
  /** Request line and header fields together (431 naming it when over). */
  readonly maxHeaderBytes: number;
  /**
   * Room on top of the limits for the fields the calling sidecar adds (MESH_HEAD_HEADROOM):
   * set on the inbound's mesh HTTP/1.1 server, so a request the caller's outbound accepted
   * is not refused 431 for what the sidecars themselves wrote into it.
   */
  readonly meshHeadroom?: boolean;
  readonly clock: Clock;
  /** Where a redirected connection was going (looked up once per connection). */
  readonly origDstOf?: (socket: Socket) => { address: string; port: number; upstream?: string } | undefined;
  /** Peer identity of the connection, if any (a TLS peer's SPIFFE ID); looked up once per connection. */
  readonly identityOf?: (socket: Socket) => string;
  /**
   * Whether the connection's FIN is a half-close, answered (H1ConnectionOptions.halfClose):
   * true for a mesh multiplexer stream, whose peer resets it to go away. Default: no (TCP, TLS).
   */
  readonly halfCloseOf?: (socket: Socket) => boolean;
  /**
   * The callers are peer sidecars (the mesh server): a request's `wren-orig-proto: HTTP/2`
   * says it was an HTTP/2 request (gRPC included) carried as HTTP/1.1 between the sidecars
   * (protocol.meshHttp2 mux), so its ProxyRequest says HTTP/2 (access log, spans) and the
   * app gets it in HTTP/2 again (deliver-to-app.ts).
   */
  readonly meshOrigProto?: boolean;
  /**
   * A malformed request, answered 4xx from the error table (the codec's H1Error, or an
   * invalid request-target): for metrics and the access log, with the connection's client
   * and original destination. It never reaches the layers (no ProxyRequest is served).
   */
  readonly onClientError?: (err: H1Error, source: ProxyRequest['source'], origDst: ProxyRequest['origDst']) => void;
  /** Each request's head must arrive within this (0: off). Envoy request_headers_timeout. */
  readonly headersTimeoutMs?: number;
  /** A kept-alive connection with no request for this long is closed (0: off). */
  readonly idleTimeoutMs?: number;
  /** A request on whose connection no byte moves either way for this long is cut (0: off). */
  readonly streamIdleTimeoutMs?: number;
  /**
   * Once a connection has ended its side, the client has this long to close its own before
   * the socket is destroyed (Envoy delayed_close_timeout; 0: off). Default
   * DEFAULT_DELAYED_CLOSE_MS (H1ConnectionOptions.delayedCloseMs).
   */
  readonly delayedCloseMs?: number;
  /** A timeout fired (the sweep's, or a connection's delayed close). */
  readonly onLimit?: (limit: H1TimerLimit) => void;
  /**
   * A partial head timed out and was answered 408 (headersTimeoutMs; also counted by
   * onLimit as request-headers-timeout), with the connection's client and original
   * destination: for the access log (AccessLog.refused()), as no request reached the layers.
   */
  readonly onHeadersTimeout?: (err: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst']) => void;
  /** A request started (+1) or ended (-1): its response written, or its client gone. For graceful drain. */
  readonly onExchange?: (delta: 1 | -1) => void;
  /**
   * The idle bound of an upgrade's tunnel after its 101 (limits.tcpIdleTimeoutMs, Envoy's
   * idle_timeout on an upgraded connection), the listener's one object for all its tunnels:
   * read only when a connection switches protocols. Absent: no idle bound.
   */
  readonly tunnelIdle?: SpliceIdle;
}

/** How often the timers are checked: often enough that a timeout fires within about 10 % of it. */
const checkEvery = (ms: number): number => Math.min(30_000, Math.max(50, Math.floor(ms / 10)));
const EMPTY_HEADERS: Headers = {};
const noTrailers = (): undefined => undefined;

/**
 * What an outbound sidecar may add to a head it accepted: traceparent, tracestate (up to
 * 8192 characters by W3C), b3 forms, x-request-id, x-forwarded-for, wren-target-port,
 * wren-orig-proto, wren-peer, wren-attempt, grpc-timeout.
 */
export const MESH_HEAD_HEADROOM = { fields: 16, bytes: 12 * 1024 } as const;

/**
 * The mesh server's limits: what a peer's outbound accepted, plus MESH_HEAD_HEADROOM. Its
 * heads are within limits.maxHeaderBytes (both of the outbound's listeners answer 431
 * past it); HTTP/1.1 callers are held to 100 fields, HTTP/2 ones (protocol.meshHttp2 mux)
 * to the HTTP/2 sessions' H2_SERVER_MAX_FIELDS, with trailers bound only by the session's
 * SETTINGS_MAX_HEADER_LIST_SIZE: on `h2` the inbound's session takes those as well, so a
 * request is refused on neither transport for what HTTP/2 allows.
 */
function meshLimits(maxHeaderBytes: number): H1Limits {
  return {
    ...DEFAULT_H1_LIMITS,
    maxHeadBytes: maxHeaderBytes + MESH_HEAD_HEADROOM.bytes,
    maxHeaderCount: Math.max(DEFAULT_H1_LIMITS.maxHeaderCount, H2_SERVER_MAX_FIELDS) + MESH_HEAD_HEADROOM.fields,
    maxTrailerBytes: maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR,
  };
}

/**
 * The listeners' HTTP/1.1 server, on Wren's codec (proxy/h1/): each request becomes a
 * ProxyRequest for the listener's layers and each ProxyResponse is written with the
 * serialiser. It never listens itself: a listener hands it the connections it detected
 * as HTTP/1.1 (plaintext or TLS) with serve(). The timers are one sweep over the
 * connections (as node's connectionsCheckingInterval), not a timer per request.
 */
export class H1Server {
  /** Not a Set: a long-lived Set keeps the connections that left for the scavenger (common/live-set.ts). */
  private readonly conns = new LiveSet<ServedConnection>();
  private timer: Timer | null = null;
  private draining = false;
  readonly limits: H1Limits;
  private readonly period: number;
  private readonly sweep = (): void => this.checkTimers();

  constructor(readonly opts: H1ServerOptions) {
    this.limits = opts.meshHeadroom ? meshLimits(opts.maxHeaderBytes) : { ...DEFAULT_H1_LIMITS, maxHeadBytes: opts.maxHeaderBytes };
    const ms = [opts.headersTimeoutMs ?? 0, opts.idleTimeoutMs ?? 0, opts.streamIdleTimeoutMs ?? 0].filter((t) => t > 0);
    this.period = ms.length === 0 ? 0 : checkEvery(Math.min(...ms));
  }

  /**
   * Serves HTTP/1.1 on a connection: its first bytes are still to be read (put back by
   * detection), or `head`, what detection read and took (peek.ts peekTaking), is parsed
   * first.
   */
  serve(socket: Socket, head?: Buffer): void {
    const c = new ServedConnection(this, socket);
    c.entry = this.conns.add(c);
    if (this.draining) c.conn.closeWhenIdle();
    if (this.timer === null && this.period > 0) this.arm();
    socket.resume();
    if (head !== undefined && head.length > 0) c.conn.receive(head);
  }

  /** Connections being served (not counting upgraded ones). */
  get connections(): number {
    return this.conns.size;
  }

  /**
   * Graceful drain: idle connections close now; one with a request in flight finishes it
   * (its response says `connection: close`) and then closes. Later connections are served
   * the same way: one request, then closed.
   */
  closeIdle(): void {
    this.draining = true;
    this.closeOpenIdle();
  }

  /**
   * closeIdle() for the connections open now only: later ones are served as usual (the
   * outbound listener's drain, which keeps serving the app).
   */
  closeOpenIdle(): void {
    for (const c of this.conns) c.conn.closeWhenIdle();
  }

  /** Drops every connection (their requests are cancelled). */
  close(): void {
    this.draining = true;
    for (const c of this.conns) c.conn.socket.destroy();
    this.conns.clear();
    this.disarm();
  }

  /** @internal */
  forget(c: ServedConnection): void {
    this.conns.delete(c.entry);
    if (this.conns.size === 0) this.disarm();
  }

  private arm(): void {
    this.timer = this.opts.clock.setTimeout(this.sweep, this.period);
    this.timer.unref?.();
  }

  private disarm(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private checkTimers(): void {
    this.timer = null;
    const o = this.opts;
    const now = o.clock.now();
    for (const c of this.conns) {
      const fired = c.conn.checkTimers(now, o.headersTimeoutMs ?? 0, o.idleTimeoutMs ?? 0, o.streamIdleTimeoutMs ?? 0);
      if (fired !== null) o.onLimit?.(fired);
    }
    if (this.conns.size > 0) this.arm();
  }
}

/**
 * One served connection: the codec's connection, what every request on it shares (source
 * address and identity, original destination) and its response writer. It is the
 * connection's handler object, so a request costs no closure: the service's promise is
 * continued by two functions made once per connection (requests on a connection are
 * answered one at a time, so `pending` is the only one awaiting a response).
 */
class ServedConnection implements H1ConnectionOptions {
  readonly conn: H1Connection;
  /** Its place in the server's connections (set by serve()). */
  entry!: LiveEntry;
  readonly limits: H1Limits;
  readonly reasons = true;
  readonly clock: Clock;
  readonly halfClose: boolean;
  readonly delayedCloseMs: number | undefined;
  private readonly source: ProxyRequest['source'];
  private readonly origDst: ProxyRequest['origDst'];
  private readonly writer = new H1ResponseWriter();
  private pending: H1ServerExchange | null = null;
  private pendingHeaders: Headers = EMPTY_HEADERS;
  /** The pending request is an HTTP/2 one from a peer sidecar: its response keeps content-length and trailers both (write-response.ts). */
  private pendingH2 = false;
  // A turn of their own (common/deferred.ts, enterTurn): the response's deferred steps (its
  // body's read and end, the layers' body-done records) run as the write returns, not on a
  // tick after every other promise callback of this pass.
  private readonly onResponse = (res: ProxyResponse): void => inTurn(this.respond, this, res);
  private readonly onFailure = (err: unknown): void => inTurn(this.fail, this, err);

  constructor(
    private readonly server: H1Server,
    socket: Socket,
  ) {
    const o = server.opts;
    this.limits = server.limits;
    this.clock = o.clock;
    this.source = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: o.identityOf?.(socket) ?? '' };
    this.origDst = o.origDstOf?.(socket);
    this.halfClose = o.halfCloseOf?.(socket) ?? false;
    this.delayedCloseMs = o.delayedCloseMs;
    this.conn = new H1Connection(socket, this);
  }

  onRequest(ex: H1ServerExchange): void {
    const o = this.server.opts;
    // One cancellation per request (common/cancel.ts, not node's AbortController): a
    // connection-wide one would make every request's abort listeners live as long as the
    // keep-alive connection.
    const ac = new Cancel();
    ex.controller = ac;
    const req = this.request(ex, ex.head!, undefined, ac);
    this.pending = ex;
    this.pendingHeaders = req.headers;
    this.pendingH2 = req.origProto === 'HTTP/2';
    o.onExchange?.(1);
    let p: Promise<ProxyResponse>;
    try {
      // A target that is neither origin-form nor `*` (an absolute-form the URL parser
      // refuses, `http://web:abc/x`, is kept as sent) has no path to forward: 400 (RFC 9112
      // section 3.2), never a request for another resource.
      if (validTarget(req)) p = o.service(req);
      else {
        const err = new H1Error('bad-target', false, 'invalid request-target');
        o.onClientError?.(err, this.source, this.origDst);
        p = Promise.reject(err);
      }
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(this.onResponse, this.onFailure);
  }

  onExchangeEnd(ex: H1ServerExchange): void {
    // Only requests handed to the service were counted (not upgrades, nor error responses to unparsed ones).
    if (ex.controller !== null && ex.head !== null && !ex.head.upgrade) this.server.opts.onExchange?.(-1);
  }

  onUpgrade(head: H1Head, socket: Socket, rest: Buffer, ex: H1ServerExchange): void {
    const ac = new Cancel();
    ex.controller = ac;
    const protocols = head.method === 'CONNECT' ? '' : withoutH2c(head.get('upgrade') ?? '');
    const o = this.server.opts;
    serveUpgrade(o.service, this.request(ex, head, protocols, ac), ex, socket, rest, this.writer, o.tunnelIdle);
  }

  /** `Upgrade: h2c` alone is ignored, the request served as plain HTTP/1.1 (upgrade-protocols.ts). */
  acceptsUpgrade(head: H1Head): boolean {
    return head.method === 'CONNECT' || withoutH2c(head.get('upgrade') ?? '') !== '';
  }

  onClientError(err: H1Error): void {
    this.server.opts.onClientError?.(err, this.source, this.origDst);
  }

  onLimit(limit: H1TimerLimit): void {
    this.server.opts.onLimit?.(limit);
  }

  onHeadersTimeout(err: ProxyError): void {
    this.server.opts.onHeadersTimeout?.(err, this.source, this.origDst);
  }

  onClose(): void {
    this.server.forget(this);
  }

  /** The service failed: its error response, through the one error mapping. */
  private fail(err: unknown): void {
    this.respond(errorResponse(err, { headers: this.pendingHeaders }));
  }

  private respond(res: ProxyResponse): void {
    const ex = this.pending;
    const h2 = this.pendingH2;
    this.pending = null;
    this.pendingHeaders = EMPTY_HEADERS;
    this.pendingH2 = false;
    if (ex === null || ex.ended) {
      res.body?.destroy();
      return;
    }
    // Draining this one connection: the response says `connection: close`, and nothing after it is parsed.
    if (res.closeConnection === true) this.conn.closeWhenIdle();
    this.writer.write(ex, res, h2);
  }

  private request(ex: H1ServerExchange, head: H1Head, upgrade: string | undefined, signal: CancelSignal): ProxyRequest {
    // An HTTP/2 request's content-length is the one its client gave, if any (h1-pool.ts meshH2):
    // the head's frames the HTTP/1.1 message between the sidecars.
    const mesh = this.server.opts.meshOrigProto === true;
    const h2 = mesh && head.get(MESH.origProto) === 'HTTP/2';
    const headers = fieldsToHeaders(head.fields, false, h2 ? 'from-mesh' : mesh ? 'drop-mesh' : 'as-is');
    // The expectation is met here (the 100 goes out when the body is first read), as Envoy
    // does by default (proxy_100_continue: false): it is not passed on.
    if (headers['expect'] !== undefined) delete headers['expect'];
    // `te: trailers` is the one TE value that crosses (HTTP/2 allows it; gRPC relies on it);
    // fieldsToHeaders drops TE with the other hop-by-hop fields.
    const te = head.get('te');
    if (te !== undefined && /(?:^|,)\s*trailers\s*(?:,|$)/i.test(te)) headers['te'] = 'trailers';
    let authority = head.host;
    let path = head.target;
    // Absolute-form (proxy style: `GET http://web/ HTTP/1.1`): the target's authority wins over Host (RFC 9112 section 3.2.2).
    const c = path.charCodeAt(0);
    if (c === 0x68 || c === 0x48) {
      const abs = absoluteForm(path);
      if (abs !== null) {
        authority = abs.authority || authority;
        path = abs.path;
      }
    }
    return {
      method: head.method,
      scheme: 'http',
      authority,
      path,
      headers,
      body: ex.body,
      trailers: ex.body === null ? noTrailers : () => trailersOf(ex),
      origProto: h2 ? 'HTTP/2' : 'HTTP/1.1',
      source: this.source,
      origDst: this.origDst,
      signal,
      startedAt: this.clock.now(),
      upgrade,
    };
  }
}

/** The request's trailer fields as headers (hop-by-hop and content-length dropped), undefined when none are left. */
function trailersOf(ex: H1ServerExchange): Headers | undefined {
  if (ex.trailers === null) return undefined;
  const t = fieldsToHeaders(ex.trailers, true);
  delete t['te'];
  dropMeshFields(t);
  for (const _ in t) return t;
  return undefined;
}

/** The authority and origin-form of an absolute-form target; null when it is not one, or one the URL parser refuses (the target then stays as sent and gets 400). */
function absoluteForm(target: string): { authority: string; path: string } | null {
  if (!/^https?:\/\//i.test(target)) return null;
  try {
    const u = new URL(target);
    return { authority: u.host, path: u.pathname + u.search };
  } catch {
    return null;
  }
}

/** origin-form, or `*` for OPTIONS (RFC 9112 section 3.2.4); CONNECT's authority-form never reaches here (an upgrade). */
function validTarget(req: ProxyRequest): boolean {
  const c = req.path.charCodeAt(0);
  return c === 0x2f /* / */ || (req.path === '*' && req.method === 'OPTIONS');
}
