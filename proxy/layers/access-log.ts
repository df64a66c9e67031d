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
 * two listeners on the response body and the line.
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

async function logged(log: AccessLog, direction: Direction, appAddress: string | undefined, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  const res = await inner(req);
  const headersAt = log.clock.now();
  const body = res.body;
  if (body === null) {
    log.write(httpEntry(direction, req, { res, headersAt, endedAt: headersAt, cut: false }, appAddress));
    return res;
  }
  let done = false;
  const end = (): void => {
    if (done) return;
    done = true;
    // 'close' before 'end': the body was destroyed before its end.
    log.write(httpEntry(direction, req, { res, headersAt, endedAt: log.clock.now(), cut: !body.readableEnded }, appAddress));
  };
  body.once('end', end);
  body.once('close', end);
  return res;
}
