import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { dropNotFromApp, type Headers } from './headers.js';
import { H1Parser } from '../h1/parser.js';
import { Body, fieldsToHeaders, type H1Head } from '../h1/head.js';
import { DEFAULT_H1_LIMITS, MAX_INTERIM_RESPONSES } from '../h1/limits.js';
import { requestHead } from '../h1/serialize.js';
import { withoutH2c } from './upgrade-protocols.js';
import { nodeTimerMs } from '../../common/clock.js';

/**
 * Sends an upgrade request (`req.upgrade`) as HTTP/1.1 on a connection of its own (an
 * upgraded connection is never pooled): the head is rebuilt from the request's filtered
 * headers plus `Connection: upgrade` and `Upgrade`, never copied from client bytes.
 *
 * A 101 answer resolves with the connection itself as the body (the tunnel), bytes the
 * server sent after its head put back first. Any other answer is an ordinary response
 * (framed by the codec's H1Parser) after which the connection is closed: the server was
 * asked to upgrade it, so it is not reused.
 */
export interface UpgradeH1Options {
  /** The response head's bound (default 16 KiB). */
  readonly maxHeaderBytes?: number;
  /**
   * The TCP connection must be up within this (0 or absent: no bound of its own), as a
   * pooled request's connection must (the cluster's timeouts.connectMs): a 504
   * connect-timeout then. An endpoint that drops SYNs otherwise held the upgrade for the
   * kernel's retries, over 2 minutes on Linux.
   */
  readonly connectTimeoutMs?: number;
  /** Counts a limit that fired (more than MAX_INTERIM_RESPONSES 1xx). */
  readonly onLimit?: (limit: 'interim-responses') => void;
  /** The server is the local app: its trailers lose the fields only a sidecar writes (headers.ts dropNotFromApp). */
  readonly fromApp?: boolean;
}

export function upgradeH1(host: string, port: number, req: ProxyRequest, head: Headers, o: UpgradeH1Options = {}): Promise<ProxyResponse> {
  const maxHeaderBytes = o.maxHeaderBytes ?? 16 * 1024;
  const onLimit = o.onLimit;
  return new Promise((resolve, reject) => {
    // Defence in depth: the listeners already drop h2c (upgrade-protocols.ts); it never reaches an app.
    if (req.upgrade !== undefined && withoutH2c(req.upgrade) !== req.upgrade) return reject(new ProxyError('BAD_REQUEST', 'h2c upgrade is not supported'));
    let text: string;
    try {
      text = requestHead(req.method, req.path, req.authority, { ...head, connection: 'upgrade', upgrade: req.upgrade ?? '' }, 0);
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
    /** Interim (1xx) responses before the answer, at most MAX_INTERIM_RESPONSES. */
    let interim = 0;
    const fail = (err: unknown) => {
      socket.destroy();
      if (!responded) reject(toProxyError(err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' })));
      else if (!switched && !finished) body?.destroy(toProxyError(err));
    };
    const onAbort = () => fail(new ProxyError('CLIENT_CANCELLED'));
    req.signal.addEventListener('abort', onAbort, { once: true });
    const parser = new H1Parser(
      {
        onHead: (h: H1Head) => {
          if (h.status < 200 && h.status !== 101) {
            // Interim: the final answer follows. A server that sends them without end is
            // refused, as the pool refuses it for a plain request (h1-pool-conn.ts).
            if (++interim <= MAX_INTERIM_RESPONSES) return;
            onLimit?.('interim-responses');
            return fail(new ProxyError('UPSTREAM_PROTOCOL', `more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`));
          }
          responded = true;
          if (h.status === 101) {
            switched = true;
            switchHeaders = fieldsToHeaders(h.fields);
            // The protocol switched to: hop-by-hop, but the downstream 101 must name it.
            const u = h.get('upgrade');
            if (u !== undefined) switchHeaders['upgrade'] = u;
            return;
          }
          body = h.body !== Body.None ? new Readable({ read: () => socket.resume() }) : null;
          resolve({ status: h.status, headers: fieldsToHeaders(h.fields), body, trailers: () => trailers });
          if (body) body.once('close', () => socket.destroy());
        },
        onBody: (chunk) => {
          if (body && !body.push(chunk)) socket.pause();
        },
        onTrailers: (fields) => {
          const t = fieldsToHeaders(fields, true);
          if (o.fromApp === true) dropNotFromApp(t);
          if (Object.keys(t).length > 0) trailers = t;
        },
        onEnd: () => {
          if (switched) return;
          finished = true;
          socket.destroy();
          body?.push(null);
        },
        onUpgrade: (rest) => {
          if (rest.length > 0) leftover.push(rest);
        },
        onError: (e) => fail(e),
      },
      true,
      { ...DEFAULT_H1_LIMITS, maxHeadBytes: maxHeaderBytes },
    );
    parser.setRequestMethod(req.method);
    const onData = (d: Buffer) => {
      parser.execute(d);
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
      parser.finish();
      // Nothing of a response arrived (finish() says nothing for an idle parser): the close handler reports it.
    };
    const onClose = () => {
      req.signal.removeEventListener('abort', onAbort);
      if (!responded || !finished) fail(null);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', fail);
    socket.on('close', onClose);
    const connectMs = o.connectTimeoutMs ?? 0;
    const onConnectTimeout = () => fail(new ProxyError('CONNECT_TIMEOUT', `${host}:${port} after ${connectMs} ms`));
    if (connectMs > 0) {
      socket.setTimeout(nodeTimerMs(connectMs));
      socket.once('timeout', onConnectTimeout);
    }
    socket.once('connect', () => {
      // Connected: the bound was the connection's; the answer is the request timeouts' (layers/timeouts.ts).
      if (connectMs > 0) {
        socket.setTimeout(0);
        socket.removeListener('timeout', onConnectTimeout);
      }
      socket.write(text, 'latin1');
    });
  });
}
