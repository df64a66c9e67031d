import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { ProxyError } from '../errors/proxy-error.js';
import { cleanHeaders, MESH, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { H2Call, startH2Call } from './h2-call.js';
import { splice, type SpliceIdle } from '../net/tcp-tunnel.js';
import { withoutH2c } from './upgrade-protocols.js';

/**
 * An HTTP/1.1 upgrade between sidecars is an HTTP/2 extended CONNECT stream (RFC 8441, as
 * Envoy carries WebSockets over HTTP/2 hops): `:method CONNECT`, `:protocol` the
 * requested upgrade, `:scheme`/`:path`/`:authority` as for any request, the client's
 * method in `wren-orig-method`, and the request's filtered headers. The peer's inbound
 * (SETTINGS_ENABLE_CONNECT_PROTOCOL) answers 200 with `wren-upgraded` only when the app
 * answered 101; the stream is then the tunnel. Any other answer is an ordinary response.
 * Nothing is written on the stream before that answer.
 */
export function upgradeH2(session: ClientHttp2Session, req: ProxyRequest, head: Headers, extra?: Headers): Promise<ProxyResponse> {
  // Defence in depth: the listeners already drop h2c (upgrade-protocols.ts); never sent to a peer.
  if (req.upgrade !== undefined && withoutH2c(req.upgrade) !== req.upgrade) return Promise.reject(new ProxyError('BAD_REQUEST', 'h2c upgrade is not supported'));
  const out: OutgoingHttpHeaders = {
    ...head,
    ...extra,
    [MESH.origMethod]: req.method,
    ':method': 'CONNECT',
    ':protocol': req.upgrade,
    ':scheme': req.scheme,
    ':authority': req.authority,
    ':path': req.path,
  };
  // Nothing is written on the stream before the answer; it stays open as the tunnel.
  return startH2Call(new H2Call(session, req, onUpgradeResponse, false), out, false, true);
}

function onUpgradeResponse(call: H2Call, h: IncomingHttpHeaders, endStream: boolean): void {
  // The tunnel outlives the request: the caller's abort no longer resets it (splice does).
  call.req.signal.removeEventListener('abort', call.onAbort);
  const status = Number(h[':status']);
  const upgraded = h[MESH.upgraded];
  const headers = cleanHeaders(h);
  delete headers[MESH.upgraded];
  if (status === 200 && typeof upgraded === 'string') {
    headers['upgrade'] = upgraded;
    call.responded = true;
    call.resolve({ status: 101, headers, body: call.stream, trailers: noTrailers });
    return;
  }
  // Not switched: the stream carries an ordinary response; nothing more is sent on it.
  call.stream.end();
  call.respond(status, headers, endStream);
}

const noTrailers = (): undefined => undefined;

/**
 * The inbound's answer to an extended CONNECT whose app switched protocols: 200 with
 * `wren-upgraded` and the app's 101 headers, then the stream and the app connection are
 * spliced. Only now are the peer's bytes read. The tunnel has the listener's idle bound
 * (`idle`: limits.tcpIdleTimeoutMs), as an opaque TCP connection has.
 */
export function writeH2Switch(stream: ServerHttp2Stream, res: ProxyResponse, requested: string, idle?: SpliceIdle): void {
  const tunnel = res.body as Duplex;
  if (stream.destroyed || stream.closed) {
    tunnel.destroy();
    return;
  }
  const { upgrade, ...rest } = res.headers;
  const protocol = (Array.isArray(upgrade) ? upgrade[0] : upgrade) ?? requested;
  stream.respond({ ...rest, ':status': 200, [MESH.upgraded]: protocol });
  // Switched: a tunnel now, bound by the TCP idle timeout (limits.tcpIdleTimeoutMs) as an
  // opaque tunnel is, so the session guard's stream idle timeout (limits.streamIdleTimeoutMs,
  // armed while this was a request) is lifted.
  stream.setTimeout(0);
  splice(stream, tunnel, undefined, idle);
}
