import type { Agent } from 'node:http';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { MESH, header } from '../http/headers.js';
import { forwardH1 } from '../http/h1-forward.js';
import { forwardH2, wasRefused } from '../http/h2-forward.js';
import { upgradeH1 } from '../http/h1-upgrade.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { PeerPool } from '../outbound/peer-pool.js';

export interface CallerLimits {
  /** Requests/streams one caller (peer identity; all plaintext callers together) may have open to the app. */
  readonly maxStreamsPerCaller: number;
  readonly onLimit: () => void;
}

/**
 * Terminal inbound service: plaintext to the app on its port, in the protocol the
 * original client spoke (`wren-orig-proto`: requests upgraded to HTTP/2 between the
 * sidecars are downgraded back to HTTP/1.1 here).
 *
 * Fairness between callers (issue 11, item 5): all callers share one HTTP/2 session to
 * the app, and an app stops taking streams on a session whose unread responses fill its
 * memory (Node: maxSessionMemory), so one caller that never reads could make the app
 * refuse everyone. Each caller (peer identity) may hold at most `maxStreamsPerCaller`
 * requests to the app at a time; beyond it that caller's requests fail at once with
 * OVERFLOW (503, not queued, as a circuit breaker's max_requests), counted as
 * `max-streams-per-caller`. Applies to HTTP/1.1 delivery too (the app's connections).
 */
export function deliverToApp(appAddress: string, appSessions: PeerPool, agent: Agent, limits?: CallerLimits): HttpService {
  const held = new Map<string, number>();
  const release = (caller: string) => {
    const n = (held.get(caller) ?? 1) - 1;
    if (n <= 0) held.delete(caller);
    else held.set(caller, n);
  };
  return (req) => {
    const port = req.targetPort;
    if (port === undefined) return Promise.reject(new ProxyError('BAD_REQUEST', 'no target port'));
    const caller = req.source.identity;
    const n = held.get(caller) ?? 0;
    if (limits && n >= limits.maxStreamsPerCaller) {
      limits.onLimit();
      return Promise.reject(new ProxyError('OVERFLOW', `the caller has ${n} requests open to the app (limit ${limits.maxStreamsPerCaller})`));
    }
    held.set(caller, n + 1);
    const orig = header(req.headers, MESH.origProto);
    delete req.headers[MESH.origProto];
    delete req.headers[MESH.targetPort];
    delete req.headers[MESH.healthCheck];
    // An upgrade reaches the app as an HTTP/1.1 head rebuilt from the filtered headers.
    const sent =
      req.upgrade !== undefined
        ? upgradeH1(appAddress, port, req, req.headers)
        : orig === 'HTTP/1.1'
        ? forwardH1(agent, appAddress, port, req, req.headers)
        : h2ToApp(appSessions, appAddress, port, req);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      release(caller);
    };
    return sent.then(
      (res: ProxyResponse) => {
        if (!res.body) finish();
        else {
          res.body.once('end', finish);
          res.body.once('close', finish);
        }
        return res;
      },
      (err: unknown) => {
        finish();
        throw err;
      },
    );
  };
}

/**
 * One HTTP/2 stream to the app. A stream the app never processed (REFUSED_STREAM, or
 * above its GOAWAY's last stream id) is sent once more, on the pool's session then (a new
 * one after a GOAWAY: the pool drops a session that sent one), as RFC 9113 §8.7 allows
 * for any request. Only without a body: a body already piped into the refused stream is
 * consumed.
 */
function h2ToApp(pool: PeerPool, address: string, port: number, req: ProxyRequest): Promise<ProxyResponse> {
  const ep = { address, port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true };
  const once = () => pool.get(ep).then((s) => forwardH2(s, req, req.headers));
  const sent = once();
  return req.body !== null ? sent : sent.catch((err: unknown) => (wasRefused(err) && !req.signal.aborted ? once() : Promise.reject(err)));
}
