import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpService, ProxyRequest, ProxyResponse } from './exchange.js';
import type { H1ResponseWriter } from './write-response.js';
import type { H1ServerExchange } from '../h1/h1-connection.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import { splice, type SpliceIdle } from '../net/tcp-tunnel.js';

/** A list of protocol tokens (RFC 9110 section 7.8: `protocol-name ["/" protocol-version]`, comma-separated). */
const PROTOCOLS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?)*$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * An HTTP/1.1 upgrade request (or CONNECT) whose head has been read: the connection has
 * stopped reading (h1-connection.ts onUpgrade), and what the client sent after the head
 * (`held`, and whatever follows on the paused socket) waits, unread. It becomes a
 * ProxyRequest with `upgrade` set and goes through the listener's layers like any
 * request: mesh headers stripped and set, routing, admission, authorization, request ids.
 * Only when the upstream answers 101 do the held bytes flow, as the tunnel. Any other
 * answer is written as an ordinary response and the connection is closed, the held bytes
 * dropped: they never reach anyone as a request. (An upgrade request with a body was
 * refused at its head, 400.) A CONNECT from the app (forward-proxy use) is not carried by
 * the mesh: 403 from the one error table, on no endpoint's account. After the 101 the
 * tunnel has the listener's idle bound (`idle`: limits.tcpIdleTimeoutMs), as an opaque
 * TCP connection has.
 */
export function serveUpgrade(service: HttpService, req: ProxyRequest, ex: H1ServerExchange, socket: Socket, held: Buffer, writer: H1ResponseWriter, idle?: SpliceIdle): void {
  const upgrade = req.upgrade ?? '';
  if (req.method === 'CONNECT') return writer.write(ex, errorResponse(new ProxyError('CONNECT_NOT_SUPPORTED', req.path), req));
  if (!PROTOCOLS.test(upgrade)) return writer.write(ex, errorResponse(new ProxyError('BAD_REQUEST', 'invalid Upgrade header'), req));
  const answer = (out: ProxyResponse): void => {
    if (out.status === 101 && out.body) {
      if (ex.ended) return void out.body.destroy(); // the client went away meanwhile
      ex.conn.release();
      return switchProtocols(socket, out, upgrade, held, idle);
    }
    writer.write(ex, out);
  };
  let p: Promise<ProxyResponse>;
  try {
    p = service(req);
  } catch (err) {
    p = Promise.reject(err);
  }
  p.then(answer, (err: unknown) => answer(errorResponse(err, req)));
}

function switchProtocols(socket: Socket, res: ProxyResponse, requested: string, held: Buffer, idle: SpliceIdle | undefined): void {
  const tunnel = res.body as Duplex;
  if (socket.destroyed) return void tunnel.destroy();
  const upgrade = res.headers['upgrade'];
  const protocol = (Array.isArray(upgrade) ? upgrade[0] : upgrade) ?? requested;
  let text = 'HTTP/1.1 101 Switching Protocols\r\n';
  for (const k in res.headers) {
    if (k === 'upgrade' || !TOKEN.test(k)) continue;
    const v = res.headers[k];
    for (const x of Array.isArray(v) ? v : [v]) if (!BAD_VALUE.test(x)) text += `${k}: ${x}\r\n`;
  }
  text += `connection: Upgrade\r\nupgrade: ${BAD_VALUE.test(protocol) ? requested : protocol}\r\n\r\n`;
  socket.write(text, 'latin1');
  if (held.length) tunnel.write(held);
  splice(socket, tunnel, undefined, idle);
}
