import type { Readable } from 'node:stream';
import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { AccessLog } from '../access-log/access-log.js';
import { httpEntry, type Direction } from '../access-log/entry.js';

/**
 * One access log line per HTTP request (docs/observability.md, Access logs), written when
 * the response ends: its body's end, or its close when it is cut (the client went away:
 * DC) or when it is a tunnel (an upgrade's 101 / extended CONNECT's 200: logged when the
 * tunnel closes, as Envoy logs an upgraded stream).
 *
 * Off (the default) this layer costs one settings read per request and hands the request
 * on untouched: no closure, no promise, no object. On, and sampled: one pending promise,
 * one counter object, a byte-counting listener per body, two end listeners and the line.
 *
 * It sits at the top of the stack, so it sees what the client sees: synthetic error
 * responses carry their code (`proxyError`), whose flag the one error table gives.
 * `appAddress` (inbound): where deliver-to-app sends, the line's upstream_host.
 */
export const accessLog =
  (log: AccessLog, direction: Direction, appAddress?: string): HttpLayer =>
  (inner) =>
  (req) => {
    if (!log.sampled()) return inner(req);
    return logged(log, direction, appAddress, req, inner);
  };

/** Body bytes as they pass (Envoy's BYTES_RECEIVED / BYTES_SENT count body bytes). */
class Bytes {
  received = 0;
  sent = 0;
  readonly onReceived = (chunk: Buffer): void => void (this.received += chunk.length);
  readonly onSent = (chunk: Buffer): void => void (this.sent += chunk.length);
}

/**
 * Counts a body's bytes without consuming it: `prependListener` is EventEmitter's, which
 * Readable does not override, so unlike `on('data')` it does not switch the stream to
 * flowing mode; the chunks are seen when the body's own consumer takes them (pipe and
 * 'data' listeners, and `read()`, which emits 'data' for what it returns). The one pattern
 * it would disturb is a consumer that removes its last 'readable' listener and expects
 * the stream to stay paused (Node then resumes a stream that has 'data' listeners); no
 * consumer of bodies in the proxy reads that way.
 */
function count(body: Readable | null, onChunk: (chunk: Buffer) => void): void {
  body?.prependListener('data', onChunk);
}

async function logged(log: AccessLog, direction: Direction, appAddress: string | undefined, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  const bytes = new Bytes();
  count(req.body, bytes.onReceived);
  const res = await inner(req);
  const headersAt = log.clock.now();
  const body = res.body;
  if (body === null) {
    log.write(httpEntry(direction, req, { res, headersAt, endedAt: headersAt, cut: false, bytesReceived: bytes.received, bytesSent: 0 }, appAddress));
    return res;
  }
  count(body, bytes.onSent);
  let done = false;
  const end = (): void => {
    if (done) return;
    done = true;
    // 'close' before 'end': the body was destroyed before its end.
    const o = { res, headersAt, endedAt: log.clock.now(), cut: !body.readableEnded, bytesReceived: bytes.received, bytesSent: bytes.sent };
    log.write(httpEntry(direction, req, o, appAddress));
  };
  body.once('end', end);
  body.once('close', end);
  return res;
}
