import { subscribe } from 'node:diagnostics_channel';
import { constants, type Http2Server, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { cleanHeaders, cleanTrailers, header, MESH, type Headers } from './headers.js';
import { writeH2Switch } from './h2-upgrade.js';
import type { SpliceIdle } from '../net/tcp-tunnel.js';
import { withoutH2c } from './upgrade-protocols.js';
import type { HttpService, ProxyRequest, ProxyResponse } from './exchange.js';
import { writeH2Response } from './write-response.js';
import { errorResponse, tunnelRefusal } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import { releaseOnClose } from './release-on-close.js';
import type { Clock } from '../../common/clock.js';
import { Cancel } from '../../common/cancel.js';
import { validMethod } from '../h2/field-check.js';

const ignore = (): void => undefined;

export interface H2HandlerOptions {
  readonly service: HttpService;
  readonly clock: Clock;
  readonly origDstOf?: (socket: import('node:net').Socket) => { address: string; port: number } | undefined;
  readonly identityOf?: (stream: ServerHttp2Stream) => string;
  /**
   * Extended CONNECT streams (RFC 8441, `:protocol`) are HTTP/1.1 upgrades from a peer
   * sidecar: requests with `upgrade` set for the listener's layers. Only where the session
   * advertises SETTINGS_ENABLE_CONNECT_PROTOCOL (the mTLS inbound); elsewhere refused.
   */
  readonly upgrades?: boolean;
  /**
   * The idle bound of an upgrade's tunnel once the app switched protocols
   * (limits.tcpIdleTimeoutMs), the listener's one object for all its tunnels. Absent: none.
   */
  readonly tunnelIdle?: SpliceIdle;
  /** Streams with :method CONNECT (opaque TCP tunnels between sidecars). */
  readonly onConnect?: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
  /**
   * Without onConnect, a plain CONNECT is refused through refuse() (counted and logged as
   * onClientError says) with CONNECT_NOT_SUPPORTED (the outbound: no forward-proxy use), or
   * with BAD_REQUEST and this message where tunnels exist but not on this server (the
   * plaintext inbound: they are for mTLS peers).
   */
  readonly connectRefusal?: string;
  /**
   * Header list limit, answered with a 431 whose body names it. Measured as HTTP/2 does
   * (RFC 9113 §6.5.2: name + value + 32 octets per field); the session's own
   * SETTINGS_MAX_HEADER_LIST_SIZE should be a looser hard cap so we see the request.
   */
  readonly maxHeaderBytes?: number;
  /**
   * A request answered here, before the listener's layers (so neither their metrics nor the
   * access log see it): the 431 above maxHeaderBytes and refuse()'s 400-style answers
   * (extended CONNECT or an h2c upgrade where not accepted, a plain CONNECT where tunnels
   * are not served), with the connection's client and original destination. Counted and
   * logged by the listener as the HTTP/1.1 server's client errors are
   * (wren_proxy_errors_total{code}, AccessLog.refused()).
   */
  readonly onClientError?: (err: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], status?: number) => void;
}

/** How much slack the HTTP/2 session setting leaves above maxHeaderBytes, so oversized requests reach us and get a 431 body. */
export const H2_HEADER_HARD_CAP_FACTOR = 4;

/** Field lines the listeners' HTTP/2 sessions take in one header section (node:http2 maxHeaderListPairs). */
export const H2_SERVER_MAX_FIELDS = 512;

function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) n += raw[i].length + raw[i + 1].length + 32;
  return n;
}

/** Turns each HTTP/2 stream into a ProxyRequest for the listener's layers. */
export function attachH2Handler(server: Http2Server | Http2SecureServer, opts: H2HandlerOptions): void {
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    // Already reset by the client (HEADERS and RST_STREAM in the same read, as an HTTP/2
    // rapid-reset attack sends them; Node emits 'stream' after the whole read is
    // processed): nothing to answer, and nothing is relayed to the upstream, whose own
    // reset budget would otherwise be spent on our behalf. The session guard counts it.
    if (stream.closed || stream.destroyed) return void stream.on('error', ignore);
    // nghttp2 checks :method only as a token: a lower-case one (`delete`) went on to the
    // layers, which match DELETE, and to an app that upper-cases it (the HTTP/1.1 parser's
    // `lowercase-method` says why). Malformed, as on the frame-level server.
    const m = headers[':method'];
    if (typeof m === 'string' && !validMethod(m)) return malformed(opts, stream, 'a :method with a lower-case letter');
    if (opts.maxHeaderBytes !== undefined && rawHeaders && headerListSize(rawHeaders) > opts.maxHeaderBytes) {
      tooLarge(opts, stream, opts.maxHeaderBytes, headers);
      return;
    }
    if (headers[':method'] === 'CONNECT') {
      if (headers[':protocol'] !== undefined) {
        if (!opts.upgrades) return refuse(opts, stream, new ProxyError('BAD_REQUEST', 'extended CONNECT is not accepted here'));
        // An h2c "upgrade" would hide HTTP/2 requests from the inbound's layers (upgrade-protocols.ts).
        if (withoutH2c(String(headers[':protocol'])) !== String(headers[':protocol'])) return refuse(opts, stream, new ProxyError('BAD_REQUEST', 'h2c upgrade is not supported'));
      } else if (opts.onConnect) {
        opts.onConnect(stream, headers);
        return;
      } else {
        // A plain CONNECT where tunnels are not served (the outbound: forward-proxy use) is
        // the caller's error, answered before any endpoint is picked or blamed.
        if (opts.connectRefusal !== undefined) return refuse(opts, stream, new ProxyError('BAD_REQUEST', opts.connectRefusal), true);
        return refuse(opts, stream, new ProxyError('CONNECT_NOT_SUPPORTED', String(headers[':authority'] ?? '')));
      }
    }
    try {
      handle(opts, stream, headers, flags);
    } catch (err) {
      // Building the request failed (it was an async function's rejection before): answered through the one error mapping.
      if (!stream.destroyed) writeH2Response(stream, errorResponse(err, { headers: {} }));
    }
  });
}

/** What a served stream's shared listeners need, on the stream until it closes and on its request. */
class Served {
  readonly ac = new Cancel();
  trailers: Headers | undefined = undefined;
  req: ProxyRequest | undefined;

  constructor(
    private readonly stream: ServedStream,
    private readonly upgrade: string | undefined,
    /** The listener's tunnel idle bound, for an upgrade only (undefined on an ordinary request). */
    private readonly idle: SpliceIdle | undefined,
  ) {}

  /**
   * The service's answer, written: the handlers of the one `then` a served stream costs (an
   * async function awaiting the service cost two promises and its frame).
   */
  readonly onResponse = (out: ProxyResponse): void => {
    if (this.upgrade !== undefined && out.status === 101 && out.body) writeH2Switch(this.stream, out, this.upgrade, this.idle);
    else writeH2Response(this.stream, out, this.req?.headers);
    // GOAWAY (Http2Session.close): this response and the streams in flight finish; later streams are refused by the session.
    if (out.closeConnection === true) this.stream.session?.close();
  };

  readonly onFailure = (err: unknown): void => {
    this.onResponse(errorResponse(err, this.req!));
  };
}
const SERVED = Symbol('wren.h2Served');
type ServedStream = ServerHttp2Stream & { [SERVED]?: Served };

/** The client went away before our response ended (reset, or closed early): cancel upstream. */
function onServedClose(this: ServedStream): void {
  const st = this[SERVED];
  this[SERVED] = undefined;
  if (st && (this.rstCode !== constants.NGHTTP2_NO_ERROR || !this.writableFinished)) st.ac.abort();
}

/**
 * The client reset the stream before its request body ended. Node then ends the stream's
 * readable side as if the body were complete (core.js onStreamClose pushes null), so this
 * must cancel upstream first: otherwise a truncated upload reaches the app as a whole one
 * (the chunked terminator written, or a Content-Length exchange counted as sent).
 */
function onServedAborted(this: ServedStream): void {
  this[SERVED]?.ac.abort();
}

/**
 * The request body's end. Node emits 'aborted' only while our response is still open: a
 * client that resets its stream after a complete response, its upload still going (RFC
 * 9113 section 8.1 lets it), gets the same push(null) without one. The stream's rstCode
 * is set by then: a reset other than NO_ERROR cancels upstream before the relays below,
 * which listen after this one, take the end for the body's. A reset NO_ERROR is caught as
 * the stream closes (onNodeStreamClosed).
 */
function onServedEnd(this: ServedStream): void {
  const code = this.rstCode;
  if (code !== undefined && code !== constants.NGHTTP2_NO_ERROR) this[SERVED]?.ac.abort();
}

/**
 * A served stream closing before its request body ended, whatever the code: cancel
 * upstream. RST_STREAM NO_ERROR from the client after our complete response, its upload
 * still going, leaves the stream as its END_STREAM would (node's onStreamClose pushes
 * null, no 'aborted', rstCode 0, the same 'end'), so the truncated upload reached the app
 * as a whole one. Here (node's closeStream, before that push) the body has not ended;
 * after a real END_STREAM it has. Envoy resets the upstream on any downstream reset; RFC
 * 9113 section 8.1 lets only the server end a request early with NO_ERROR. Our own close
 * before the body's end (the stop-sending after a rescued gRPC call) has nowhere to send
 * the rest either. The channel publishes for node:http2 server streams only: the
 * frame-level server (proxy/h2) has no such gap (H2ServerStream.onReset fails the body).
 */
function onNodeStreamClosed(msg: unknown): void {
  const stream = (msg as { stream: ServedStream & { _readableState?: { ended: boolean } } }).stream;
  const st = stream[SERVED];
  if (st !== undefined && stream._readableState?.ended === false) st.ac.abort();
}
subscribe('http2.server.stream.close', onNodeStreamClosed);

function onServedTrailers(this: ServedStream, t: IncomingHttpHeaders): void {
  const st = this[SERVED];
  if (st) st.trailers = cleanTrailers(t);
}

/** ProxyRequest.trailers, read through the symbol (a layer's `{ ...req }` copy keeps it). */
function requestTrailers(this: { [SERVED]?: Served }): Headers | undefined {
  return this[SERVED]?.trailers;
}

function handle(opts: H2HandlerOptions, stream: ServedStream, h: IncomingHttpHeaders, flags: number): void {
  const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
  // An upgrade's stream is not read until the app has switched protocols (writeH2Switch).
  const upgrade = h[':protocol'] === undefined ? undefined : String(h[':protocol']);
  // The method of a peer's upgrade is a field (h2-upgrade.ts): checked as a :method is.
  const orig = upgrade === undefined ? undefined : h[MESH.origMethod];
  if (orig !== undefined && (typeof orig !== 'string' || !validMethod(orig))) return malformed(opts, stream, `an invalid ${MESH.origMethod}`);
  const st = new Served(stream, upgrade, upgrade === undefined ? undefined : opts.tunnelIdle);
  stream[SERVED] = st;
  releaseOnClose(stream);
  // An error always ends in 'close' (Http2Stream.destroy), which aborts: the error itself needs no handler.
  stream.on('error', ignore);
  stream.on('close', onServedClose);
  stream.on('aborted', onServedAborted);
  if (endStream) stream.resume();
  else if (upgrade === undefined) {
    stream.on('trailers', onServedTrailers);
    stream.on('end', onServedEnd);
  }
  const conn = connectionOf(opts, stream);
  const headers = cleanHeaders(h);
  let method = String(h[':method'] ?? 'GET');
  if (upgrade !== undefined) {
    method = header(headers, MESH.origMethod) ?? 'GET';
    delete headers[MESH.origMethod];
  }
  const preq = {
    method,
    scheme: String(h[':scheme'] ?? 'http'),
    authority: String(h[':authority'] ?? h['host'] ?? ''),
    path: String(h[':path'] ?? '/'),
    headers,
    body: endStream || upgrade !== undefined ? null : stream,
    trailers: requestTrailers,
    origProto: 'HTTP/2',
    source: conn.source,
    origDst: conn.origDst,
    signal: st.ac.signal,
    startedAt: opts.clock.now(),
    upgrade,
    [SERVED]: st,
  } as ProxyRequest;
  st.req = preq;
  let p: Promise<ProxyResponse>;
  try {
    p = opts.service(preq);
  } catch (err) {
    p = Promise.reject(err);
  }
  p.then(st.onResponse, st.onFailure);
}

/**
 * A request node:http2 reset as malformed before announcing it (h2-session-guard.ts
 * onUnseenStreams): the error the frame-level server counts and logs for its own
 * (h2-server-session.ts malformed(): BAD_REQUEST, reset, no status).
 */
export function nodeMalformed(): ProxyError {
  return new ProxyError('BAD_REQUEST', 'malformed request reset by node:http2 (RFC 9113 section 8.1.1)');
}

/** A connection's client as a request's `source` (what connectionOf() finds from a stream). */
export function socketSource(socket: { readonly remoteAddress?: string; readonly remotePort?: number } | undefined, identity: string): ProxyRequest['source'] {
  return { address: socket?.remoteAddress ?? '', port: socket?.remotePort ?? 0, identity };
}

/** What every request on a connection shares: who sent it and where it was going. */
interface Connection {
  readonly source: ProxyRequest['source'];
  readonly origDst: ProxyRequest['origDst'];
}
const CONNECTION = Symbol('wren.h2Connection');
type Session = ServerHttp2Session & { [CONNECTION]?: Connection };

/**
 * The connection's source and original destination, looked up at its first stream and
 * shared by the requests after it (as the HTTP/1.1 server keeps them per connection): the
 * session's socket is a Proxy whose every property read goes through a trap, and the
 * peer's identity and SO_ORIGINAL_DST do not change within a connection. Requests only
 * read them (ProxyRequest.source and origDst are readonly).
 */
function connectionOf(opts: H2HandlerOptions, stream: ServerHttp2Stream): Connection {
  const session = stream.session as Session | undefined;
  const known = session?.[CONNECTION];
  if (known !== undefined) return known;
  const socket = session?.socket;
  const conn: Connection = {
    source: { address: socket?.remoteAddress ?? '', port: socket?.remotePort ?? 0, identity: opts.identityOf?.(stream) ?? '' },
    origDst: socket ? opts.origDstOf?.(socket as import('node:net').Socket) : undefined,
  };
  if (session !== undefined) session[CONNECTION] = conn;
  return conn;
}

/**
 * A request answered before the layers, through the one error mapping: counted and logged
 * by the listener (onClientError), as the HTTP/1.1 codec's refusals are.
 */
/** `tunnel`: answered as every refused tunnel is (tunnelRefusal: status and wren-proxy-error, no body). */
function refuse(opts: H2HandlerOptions, stream: ServerHttp2Stream, e: ProxyError, tunnel = false): void {
  releaseOnClose(stream);
  stream.on('error', ignore);
  clientError(opts, stream, e);
  writeH2Response(stream, tunnel ? tunnelRefusal(e) : errorResponse(e, { headers: {} }));
}

function clientError(opts: H2HandlerOptions, stream: ServerHttp2Stream, e: ProxyError, status?: number): void {
  if (opts.onClientError === undefined) return;
  const conn = connectionOf(opts, stream);
  opts.onClientError(e, conn.source, conn.origDst, status);
}

/**
 * A malformed request (RFC 9113 section 8.1.1) node:http2 let through: a stream error
 * PROTOCOL_ERROR, counted and logged as the frame-level server's (bad-request, no status).
 */
function malformed(opts: H2HandlerOptions, stream: ServerHttp2Stream, why: string): void {
  releaseOnClose(stream);
  stream.on('error', ignore);
  clientError(opts, stream, new ProxyError('BAD_REQUEST', why), 0);
  if (!stream.destroyed) stream.close(constants.NGHTTP2_PROTOCOL_ERROR);
}

/** 431 (gRPC: RESOURCE_EXHAUSTED) through the one error mapping; the request is not read. */
function tooLarge(opts: H2HandlerOptions, stream: ServerHttp2Stream, limit: number, h: IncomingHttpHeaders): void {
  releaseOnClose(stream);
  stream.on('error', ignore);
  const ct = h['content-type'];
  const err = new ProxyError('HEADERS_TOO_LARGE', `limit is ${limit} bytes`);
  clientError(opts, stream, err);
  writeH2Response(stream, errorResponse(err, { headers: ct ? { 'content-type': String(ct) } : {} }));
}
