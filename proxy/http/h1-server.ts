import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { cleanHeaders, cleanTrailers } from './headers.js';
import type { HttpService, ProxyRequest } from './exchange.js';
import { writeH1Response } from './write-response.js';
import { answerAndClose, handleH1Upgrade } from './h1-upgrade-server.js';
import { withoutH2c } from './upgrade-protocols.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';

export interface H1ServerOptions {
  readonly service: HttpService;
  readonly maxHeaderBytes: number;
  readonly clock: Clock;
  /** Peer identity of the connection, if any. */
  readonly origDstOf?: (socket: import('node:net').Socket) => { address: string; port: number } | undefined;
  readonly identityOf?: (socket: Socket) => string;
  readonly onClientError?: (code: string) => void;
  /** Each request's head must arrive within this (0: off). Envoy request_headers_timeout. */
  readonly headersTimeoutMs?: number;
  /** A kept-alive connection with no request for this long is closed (0: off). */
  readonly idleTimeoutMs?: number;
  /** A request on whose connection no byte moves either way for this long is cut (0: off). */
  readonly streamIdleTimeoutMs?: number;
  readonly onLimit?: (limit: 'request-headers-timeout' | 'idle-connection-timeout' | 'stream-idle-timeout') => void;
}

/** Node checks header deadlines on an interval: often enough that a 10 s timeout fires within about 10 % of it. */
const checkEvery = (ms: number): number => Math.min(30_000, Math.max(50, Math.floor(ms / 10)));

/**
 * An HTTP/1.1 server that turns each request into a ProxyRequest for the listener's
 * layers. It never listens itself: detected connections are handed to it.
 */
export function createH1Server(opts: H1ServerOptions): Server {
  const headersTimeout = opts.headersTimeoutMs ?? 0;
  // requestTimeout stays 0 (a request may stream for as long as it moves); headersTimeout
  // is Node's per-request header deadline, answered with 408 through 'clientError'.
  const server = createServer(
    {
      maxHeaderSize: opts.maxHeaderBytes,
      requestTimeout: 0,
      headersTimeout,
      keepAliveTimeout: opts.idleTimeoutMs ?? 60_000,
      shouldUpgradeCallback: wantsUpgrade,
      connectionsCheckingInterval: checkEvery(headersTimeout),
    },
    (req, res) => {
      void handle(opts, req, res);
    },
  );
  // The server never listens (detected connections are handed to it), but Node only
  // starts checking header deadlines once a server is listening: start it here.
  if (headersTimeout > 0) server.emit('listening');
  server.on('timeout', (socket: Socket) => {
    // A request in flight on which nothing moved (Node's socket inactivity timer, set per
    // request in handle()), or a kept-alive connection idle past keepAliveTimeout.
    opts.onLimit?.((socket as Socket & { _httpMessage?: unknown })._httpMessage ? 'stream-idle-timeout' : 'idle-connection-timeout');
    socket.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    opts.onClientError?.(err.code ?? 'unknown');
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) opts.onLimit?.('request-headers-timeout');
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const e = timedOut
      ? new ProxyError('HEADERS_TIMEOUT', `after ${headersTimeout} ms`)
      : new ProxyError(tooLarge ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST', tooLarge ? `limit is ${opts.maxHeaderBytes} bytes` : err.code);
    const body = `${e.message}\n`;
    socket.end(
      `HTTP/1.1 ${e.httpStatus} ${timedOut ? 'Request Timeout' : tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `wren-proxy-error: ${e.label}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  // CONNECT from the app (forward-proxy use) is not carried by the mesh: a 4xx from the one
  // error table, on no endpoint's account (node would otherwise just close the socket).
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    answerAndClose(req, socket, errorResponse(new ProxyError('CONNECT_NOT_SUPPORTED', req.url), { headers: {} }));
  });
  // Upgrades (WebSocket, ...) go through the same layers as any request (h1-upgrade-server.ts).
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    void handleH1Upgrade(opts.service, (r, upgrade, signal) => proxyRequestOf(opts, r, false, signal, upgrade), req, socket, head);
  });
  return server;
}

async function handle(opts: H1ServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const ac = new AbortController();
  // The client went away before the whole response was written: cancel upstream.
  res.once('close', () => {
    if (!res.writableEnded) ac.abort();
  });
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  if (!hasBody) req.resume();
  const preq = proxyRequestOf(opts, req, hasBody, ac.signal, undefined);
  let out;
  try {
    out = await opts.service(preq);
  } catch (err) {
    out = errorResponse(err, preq);
  }
  writeH1Response(res, out, preq.method === 'HEAD');
}

/**
 * An `Upgrade: h2c` offer (RFC 7540 section 3.2, deprecated by RFC 9113) is ignored, as a
 * server may ignore any Upgrade (RFC 9110 section 7.8), also when it is one of a list
 * (`h2c, websocket`: only the others are offered on, withoutH2c). With nothing else
 * offered the request is served as plain HTTP/1.1 (its Upgrade and HTTP2-Settings fields
 * are hop-by-hop and dropped), body and keep-alive included.
 */
function wantsUpgrade(req: IncomingMessage): boolean {
  const u = req.headers.upgrade;
  return u !== undefined && withoutH2c(u) !== '';
}

function proxyRequestOf(opts: H1ServerOptions, req: IncomingMessage, hasBody: boolean, signal: AbortSignal, upgrade: string | undefined): ProxyRequest {
  const socket = req.socket;
  // Stream idle timeout: Node resets a kept-alive socket's timer to 0 when the next
  // request starts, so it is set per request (after the response, keepAliveTimeout takes over).
  if (opts.streamIdleTimeoutMs) socket.setTimeout(opts.streamIdleTimeoutMs);
  const headers = cleanHeaders(req.headers);
  // Node's server has already answered `Expect: 100-continue` with a 100 (there is no
  // checkContinue listener; other expectations got a 417), as Envoy does by default
  // (proxy_100_continue: false): the expectation is met here and is not passed on.
  if (headers['expect'] !== undefined) delete headers['expect'];
  return {
    method: req.method ?? 'GET',
    scheme: 'http',
    authority: authorityOf(req),
    path: pathOf(req.url ?? '/'),
    headers,
    body: hasBody ? req : null,
    trailers: () => cleanTrailers(req.trailers),
    origProto: 'HTTP/1.1',
    source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: opts.identityOf?.(socket) ?? '' },
    origDst: opts.origDstOf?.(socket),
    signal,
    startedAt: opts.clock.now(),
    upgrade,
  };
}

/** Absolute-form request targets (proxy style: `GET http://web/ HTTP/1.1`) carry the authority. */
function authorityOf(req: IncomingMessage): string {
  const url = req.url ?? '';
  if (url.startsWith('http://') || url.startsWith('https://')) {
    try {
      return new URL(url).host;
    } catch {
      return req.headers.host ?? '';
    }
  }
  return req.headers.host ?? '';
}

function pathOf(url: string): string {
  if (url.startsWith('http://') || url.startsWith('https://')) {
    try {
      const u = new URL(url);
      return u.pathname + u.search;
    } catch {
      return '/';
    }
  }
  return url;
}
