import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import type { Headers } from './headers.js';
import { H1ResponseParser, type H1ResponseHead } from './h1-response-parser.js';
import { requestHead } from './h1-pool.js';
import { withoutH2c } from './upgrade-protocols.js';

/**
 * Sends an upgrade request (`req.upgrade`) as HTTP/1.1 on a connection of its own (an
 * upgraded connection is never pooled): the head is rebuilt from the request's filtered
 * headers plus `Connection: upgrade` and `Upgrade`, never copied from client bytes.
 *
 * A 101 answer resolves with the connection itself as the body (the tunnel), bytes the
 * server sent after its head put back first. Any other answer is an ordinary response
 * (framed by H1ResponseParser) after which the connection is closed: the server was
 * asked to upgrade it, so it is not reused.
 */
export function upgradeH1(host: string, port: number, req: ProxyRequest, head: Headers, maxHeaderBytes = 16 * 1024): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    // Defence in depth: the listeners already drop h2c (upgrade-protocols.ts); it never reaches an app.
    if (req.upgrade !== undefined && withoutH2c(req.upgrade) !== req.upgrade) return reject(new ProxyError('BAD_REQUEST', 'h2c upgrade is not supported'));
    let text: string;
    try {
      text = requestHead(req, { ...head, connection: 'upgrade', upgrade: req.upgrade ?? '' });
    } catch (e) {
      return reject(e);
    }
    if (req.signal.aborted) return reject(new ProxyError('CLIENT_CANCELLED'));
    const socket: Socket = connect({ host, port });
    socket.setNoDelay(true);
    let responded = false;
    let switched = false;
    let leftover: Buffer[] = [];
    let body: Readable | null = null;
    let trailers: Headers | undefined;
    let switchHeaders: Headers = {};
    let finished = false;
    const fail = (err: unknown) => {
      socket.destroy();
      if (!responded) reject(toProxyError(err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' })));
      else if (!switched && !finished) body?.destroy(toProxyError(err));
    };
    const onAbort = () => fail(new ProxyError('CLIENT_CANCELLED'));
    req.signal.addEventListener('abort', onAbort, { once: true });
    const parser = new H1ResponseParser(
      {
        onHead: (h: H1ResponseHead) => {
          responded = true;
          if (h.status === 101) {
            switched = true;
            switchHeaders = h.headers;
            return;
          }
          body = h.hasBody ? new Readable({ read: () => socket.resume() }) : null;
          resolve({ status: h.status, headers: h.headers, body, trailers: () => trailers });
          if (body) body.once('close', () => socket.destroy());
        },
        onData: (chunk) => {
          if (switched) leftover.push(chunk);
          else if (body && !body.push(chunk)) socket.pause();
        },
        onEnd: (t) => {
          trailers = t;
          finished = true;
          socket.destroy();
          body?.push(null);
        },
      },
      maxHeaderBytes,
      true,
    );
    const onData = (d: Buffer) => {
      try {
        parser.execute(d, req.method === 'HEAD');
      } catch (e) {
        return fail(e);
      }
      if (!switched) return;
      // Switched: from here on the connection is the tunnel. It is handed over paused, the
      // new protocol's first bytes (if they came with the head) put back in front.
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', fail);
      socket.removeListener('close', onClose);
      req.signal.removeEventListener('abort', onAbort);
      socket.pause();
      for (const c of leftover.reverse()) socket.unshift(c);
      leftover = [];
      resolve({ status: 101, headers: switchHeaders, body: socket, trailers: () => undefined });
    };
    const onEnd = () => {
      try {
        parser.finish();
      } catch (e) {
        fail(e);
      }
    };
    const onClose = () => {
      req.signal.removeEventListener('abort', onAbort);
      if (!responded || !finished) fail(null);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', fail);
    socket.on('close', onClose);
    socket.once('connect', () => socket.write(text, 'latin1'));
  });
}
