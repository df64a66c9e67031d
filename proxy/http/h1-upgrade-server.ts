import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpService, ProxyRequest, ProxyResponse } from './exchange.js';
import { writeH1Response } from './write-response.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import { splice } from '../net/tcp-tunnel.js';
import { withoutH2c } from './upgrade-protocols.js';

/** A list of protocol tokens (RFC 9110 section 7.8: `protocol-name ["/" protocol-version]`, comma-separated). */
const PROTOCOLS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?)*$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const ignore = (): void => undefined;

/**
 * An HTTP/1.1 upgrade request (Node's 'upgrade' event: the head is parsed, the socket is
 * ours). It becomes a ProxyRequest with `upgrade` set and goes through the listener's
 * layers like any request: mesh headers stripped and set, routing, admission,
 * authorization, request ids. Bytes the client sent after the head (`head` and whatever
 * follows on the socket) are held, unread, until the upstream answers 101; only then do
 * they flow, as the tunnel. Any other answer is written as an ordinary response and the
 * connection is closed, the held bytes dropped: they never reach anyone as a request.
 * An upgrade request may not carry a body (as Envoy): 400.
 */
export async function handleH1Upgrade(
  service: HttpService,
  toRequest: (req: IncomingMessage, upgrade: string, signal: AbortSignal) => ProxyRequest,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): Promise<void> {
  socket.pause();
  socket.on('error', ignore);
  const ac = new AbortController();
  const onClose = () => ac.abort();
  socket.once('close', onClose);
  // h2c is never carried (upgrade-protocols.ts): the other protocols offered are.
  const upgrade = withoutH2c(req.headers.upgrade ?? '');
  const preq = toRequest(req, upgrade, ac.signal);
  let out: ProxyResponse;
  const cl = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0')) out = errorResponse(new ProxyError('BAD_REQUEST', 'an upgrade request cannot carry a body'), preq);
  else if (!PROTOCOLS.test(upgrade)) out = errorResponse(new ProxyError('BAD_REQUEST', 'invalid Upgrade header'), preq);
  else {
    try {
      out = await service(preq);
    } catch (err) {
      out = errorResponse(err, preq);
    }
  }
  socket.removeListener('close', onClose);
  if (out.status === 101 && out.body) return switchProtocols(socket, out, upgrade, head);
  if (socket.destroyed) return void out.body?.destroy();
  answerAndClose(req, socket, out);
}

/**
 * An ordinary answer on a connection Node's server has let go of (an upgrade not
 * switched, a CONNECT refused): written by a ServerResponse of our own, then the
 * connection is closed (Connection: close).
 */
export function answerAndClose(req: IncomingMessage, socket: Socket, out: ProxyResponse): void {
  socket.on('error', ignore);
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once('finish', () => socket.destroySoon());
  res.once('close', () => socket.destroy());
  writeH1Response(res, out, req.method === 'HEAD');
}

function switchProtocols(socket: Socket, res: ProxyResponse, requested: string, held: Buffer): void {
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
  splice(socket, tunnel);
}
