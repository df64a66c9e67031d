import type { BodyStream, HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { AccessLog } from '../access-log/access-log.js';
import { httpEntry, type Direction } from '../access-log/entry.js';
import { bodyBytes, countBodyBytes, countTunnelWrites, isTunnel, tunnelBytesWritten } from '../metrics/body-bytes.js';

/**
 * One access log line per HTTP request (docs/observability.md, Access logs), written when
 * the response ends: its body's end, or its close when it is cut (the client went away:
 * DC) or when it is a tunnel (an upgrade's 101 / extended CONNECT's 200: logged when the
 * tunnel closes, as Envoy logs an upgraded stream).
 *
 * Off (the default) this layer costs one settings read per request and hands the request
 * on untouched: no closure, no promise, no object. On, and sampled: one record object, the
 * one promise of its `then` (not an async function's two), two shared end listeners and
 * the line. Body bytes are the counts the bodies' `push` already keeps for the request
 * metrics (metrics/body-bytes.ts): no listener per chunk.
 *
 * It sits at the top of the stack, so it sees what the client sees: synthetic error
 * responses carry their code (`proxyError`), whose flag the one error table gives.
 * `appAddress` (inbound): where deliver-to-app sends, the line's upstream_host.
 */
export const accessLog =
  (log: AccessLog, direction: Direction, appAddress?: string, tokenParams?: () => ReadonlySet<string> | undefined): HttpLayer =>
  (inner) =>
  (req) => {
    if (!log.sampled()) return inner(req);
    // Where the workload's RequestAuthentication reads tokens from (the inbound's), known
    // before any layer below runs: a request refused before request-authn (a 400 from path
    // normalization, a 403 on a port made STRICT) carries its token in the query all the same.
    if (tokenParams !== undefined && req.tokenParams === undefined && req.path.includes('?')) req.tokenParams = tokenParams();
    if (req.body) countBodyBytes(req.body);
    const rec = new Logged(log, direction, appAddress, req);
    let p: Promise<ProxyResponse>;
    try {
      p = inner(req);
    } catch (err) {
      return Promise.reject(err);
    }
    return p.then(rec.onResponse);
  };

const LOGGED = Symbol('wren.accessLogged');
type LoggedBody = BodyStream & { [LOGGED]?: Logged; [TUNNEL_BYTES]?: number };

/** One logged request, from its start to its response's end. */
class Logged {
  private res: ProxyResponse | undefined;
  private headersAt = 0;

  constructor(
    private readonly log: AccessLog,
    private readonly direction: Direction,
    private readonly appAddress: string | undefined,
    private readonly req: ProxyRequest,
  ) {}

  readonly onResponse = (res: ProxyResponse): ProxyResponse => {
    this.res = res;
    this.headersAt = this.log.clock.now();
    const body = res.body as LoggedBody | null;
    if (body === null) {
      this.write(this.headersAt, false, 0);
      return res;
    }
    if (isTunnel(this.req, res)) {
      countTunnel(body);
      countTunnelWrites(body);
    } else countBodyBytes(body);
    body[LOGGED] = this;
    // on, not once: each event fires at most once and the line is written once (no once() wrapper per request).
    body.on('end', onBodyDone);
    body.on('close', onBodyDone);
    return res;
  };

  /** The response body ended, or closed first (`cut`), having sent `sent` bytes. */
  ended(cut: boolean, sent: number): void {
    this.write(this.log.clock.now(), cut, sent);
  }

  private write(endedAt: number, cut: boolean, sent: number): void {
    // A tunnel's upload (what the client wrote into it) is the request's bytes too (read for a tunnel only, as record-metrics does).
    const res = this.res!;
    const upload = isTunnel(this.req, res) ? tunnelBytesWritten(res.body) : 0;
    const o = { res, headersAt: this.headersAt, endedAt, cut, bytesReceived: bodyBytes(this.req.body) + upload, bytesSent: sent };
    this.log.write(httpEntry(this.direction, this.req, o, this.appAddress));
  }
}

/** 'end' or 'close' of a logged response body, whichever first: its line ('close' before 'end': the body was cut). */
function onBodyDone(this: LoggedBody): void {
  const rec = this[LOGGED];
  if (!rec) return;
  this[LOGGED] = undefined;
  rec.ended(!this.readableEnded, this[TUNNEL_BYTES] ?? bodyBytes(this));
}

/**
 * A tunnel (an upgrade's 101, a CONNECT's 200) is a Duplex whose readable side may be fed
 * without `push` (a socket reading into its own buffer): its bytes are counted as its
 * consumer takes them. `prependListener` does not switch it to flowing mode (unlike `on`).
 */
const TUNNEL_BYTES = Symbol('wren.tunnelBytes');

function countTunnel(body: LoggedBody): void {
  body[TUNNEL_BYTES] = 0;
  body.prependListener('data', onTunnelData);
}

function onTunnelData(this: LoggedBody, chunk: Buffer): void {
  this[TUNNEL_BYTES]! += chunk.length;
}
