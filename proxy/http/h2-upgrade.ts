import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { cleanHeaders, cleanTrailers, MESH, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { releaseOnClose } from './release-on-close.js';
import { splice } from '../net/tcp-tunnel.js';
import { withoutH2c } from './upgrade-protocols.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = constants;

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
  return new Promise((resolve, reject) => {
    // Defence in depth: the listeners already drop h2c (upgrade-protocols.ts); never sent to a peer.
    if (req.upgrade !== undefined && withoutH2c(req.upgrade) !== req.upgrade) return reject(new ProxyError('BAD_REQUEST', 'h2c upgrade is not supported'));
    let stream: ClientHttp2Stream;
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
    try {
      stream = session.request(out, { endStream: false });
    } catch (e) {
      reject(new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e }));
      return;
    }
    releaseOnClose(stream);
    let responded = false;
    let trailers: Headers | undefined;
    const signal = req.signal;
    const onAbort = () => stream.close(NGHTTP2_CANCEL);
    signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (!responded) reject(toProxyError(Object.assign(new Error(`stream closed (code ${stream.rstCode})`), { code: 'ECONNRESET' })));
    });
    stream.on('error', (err) => {
      if (!responded) reject(toProxyError(err));
    });
    stream.once('response', (h: IncomingHttpHeaders, flags: number) => {
      responded = true;
      signal.removeEventListener('abort', onAbort);
      const status = Number(h[':status']);
      const upgraded = h[MESH.upgraded];
      const headers = cleanHeaders(h);
      delete headers[MESH.upgraded];
      if (status === 200 && typeof upgraded === 'string') {
        headers['upgrade'] = upgraded;
        resolve({ status: 101, headers, body: stream, trailers: () => undefined });
        return;
      }
      // Not switched: the stream carries an ordinary response; nothing more is sent on it.
      stream.end();
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      if (endStream) stream.resume();
      else stream.once('trailers', (t: IncomingHttpHeaders) => (trailers = cleanTrailers(t)));
      resolve({ status, headers, body: endStream ? null : stream, trailers: () => trailers });
    });
  });
}

/**
 * The inbound's answer to an extended CONNECT whose app switched protocols: 200 with
 * `wren-upgraded` and the app's 101 headers, then the stream and the app connection are
 * spliced. Only now are the peer's bytes read.
 */
export function writeH2Switch(stream: ServerHttp2Stream, res: ProxyResponse, requested: string): void {
  const tunnel = res.body as Duplex;
  if (stream.destroyed || stream.closed) {
    tunnel.destroy();
    return;
  }
  const { upgrade, ...rest } = res.headers;
  const protocol = (Array.isArray(upgrade) ? upgrade[0] : upgrade) ?? requested;
  stream.respond({ ...rest, ':status': 200, [MESH.upgraded]: protocol });
  splice(stream, tunnel);
}
