import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../../common/node-http.js';
import type { AddressInfo } from 'node:net';
import { isLevel, type Logger } from '../../common/logger.js';
import { listenDualStack } from '../net/listen-dual-stack.js';
import { adminHostRefusal, requestTarget } from '../../common/admin-host.js';
import { systemClock, type Clock } from '../../common/clock.js';
import { boundFlush, DEFAULT_DELAYED_CLOSE_MS } from '../net/delayed-close.js';
import { field, setField } from '../http/headers.js';
import { BoundedAccept, type AcceptLimit, type AcceptLimits } from '../../common/bounded-accept.js';
import { secretsHidden } from '../../contract/jwks-uri-shown.js';

export interface AdminDeps {
  readonly address: string;
  /** Also bound for IPv6 on the same port when set (default '': the admin port is 127.0.0.1 only). */
  readonly ipv6Address?: string;
  readonly port: number;
  readonly logger: Logger;
  readonly ready: () => { ready: boolean; reason: string };
  readonly metrics: () => Promise<{ contentType: string; body: string }>;
  readonly configDump: () => unknown;
  /** With listener workers, asked of each of them (worker-pool.ts): a promise. */
  readonly clusters: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  readonly certs: () => unknown;
  readonly drain: () => void;
  /** /debug/route: [status, JSON] for a request described by the query (routing/explain-route.ts). */
  readonly debugRoute?: (q: { authority: string; path: string; method: string; headers: Record<string, string | string[]> }) => [number, unknown];
  readonly clock?: Clock;
  /**
   * A response must be written with no more than this without progress, or its connection
   * is destroyed (a client that does not read; limits.delayedCloseTimeoutMs, net/delayed-close.ts
   * boundFlush). Default DEFAULT_DELAYED_CLOSE_MS; 0: off.
   */
  readonly delayedCloseMs?: number;
  /**
   * The proxy's limits.requestHeadersTimeoutMs (a request head must arrive within it from
   * accept or from the previous response) and limits.maxConnectionsPerListener (bounded-accept.ts).
   */
  readonly limits: AcceptLimits;
  /** Counts the bounds above firing (wren_limit_exceeded_total{direction="admin"}). */
  readonly onLimit?: (limit: AcceptLimit | 'delayed-close-timeout') => void;
}

const ENDPOINTS: readonly [string, string, string][] = [
  ['GET', '/', 'this list'],
  ['GET', '/ready', '200 once config has arrived, while not draining and the certificate has not expired, else 503 with the reason'],
  ['GET', '/live', '200 while the process runs'],
  ['GET', '/metrics', 'Prometheus metrics'],
  ['GET', '/config_dump', 'effective configuration (JSON)'],
  ['GET', '/clusters', 'endpoints and their state (JSON)'],
  ['GET', '/certs', 'workload identity, certificate serial and expiry, trust anchors (JSON)'],
  ['GET', '/debug/route?authority=&path=&method=&header=n:v', 'which HTTPRoute/GRPCRoute rule and backend a request would take, and why (JSON)'],
  ['POST', '/logging?level=debug|info|warn|error', 'change the log level (needs `wren-admin: 1`, from localhost)'],
  ['POST', '/drain', 'graceful shutdown as SIGTERM, without its minimum drain (needs `wren-admin: 1`, from localhost)'],
];

/** GET /: one line per endpoint, the descriptions in one column past the longest path. */
const PATH_WIDTH = Math.max(...ENDPOINTS.map(([, p]) => p.length)) + 2;
const ENDPOINT_LIST = ENDPOINTS.map(([m, p, d]) => `${m.padEnd(5)}${p.padEnd(PATH_WIDTH)}${d}`).join('\n') + '\n';

/** The header every admin action (POST) must carry. */
const ADMIN_ACTION_HEADER = 'wren-admin';

/**
 * Why an admin action is refused, or null if it may run. Actions are for processes on
 * this host only (Linkerd's /shutdown is localhost-only too), and they need a custom
 * header: a web page the app renders cannot make a browser send one cross-site without a
 * CORS preflight, which the admin port never approves (Envoy's admin requires POST for
 * the same reason). A request a browser marks as coming from a page (Origin, or
 * Sec-Fetch-Site other than `none`) is refused whatever it carries.
 */
function actionRefusal(req: IncomingMessage): string | null {
  const from = req.socket.remoteAddress ?? '';
  if (!(from.startsWith('127.') || from === '::1' || from.startsWith('::ffff:127.'))) return `admin actions are accepted from localhost only, not from ${from}`;
  if (req.headers.origin !== undefined) return 'admin actions are refused from web pages (the request has an Origin header)';
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'none') return `admin actions are refused from web pages (Sec-Fetch-Site: ${String(site)})`;
  if (req.headers[ADMIN_ACTION_HEADER] !== '1') return `admin actions need the header \`${ADMIN_ACTION_HEADER}: 1\` (curl -X POST -H '${ADMIN_ACTION_HEADER}: 1' ...)`;
  return null;
}

/**
 * The admin port, bound to localhost by default (it exposes config and can drain the
 * proxy). Names follow Envoy's admin API where the meaning matches; mutations are POST
 * and are refused unless they come from localhost with the `wren-admin: 1` header. Every
 * request whose Host is a DNS name other than localhost is refused (adminHostRefusal:
 * DNS rebinding).
 */
export class AdminServer {
  private readonly server: Server;
  private readonly accepted: BoundedAccept;

  constructor(private readonly d: AdminDeps) {
    const clock = d.clock ?? systemClock;
    const ms = d.delayedCloseMs ?? DEFAULT_DELAYED_CLOSE_MS;
    const fired = (): void => d.onLimit?.('delayed-close-timeout');
    this.server = createServer((req, res) => {
      const socket = req.socket;
      this.accepted.headArrived(socket);
      res.once('finish', () => this.accepted.responseDone(socket));
      this.route(req, res)
        .catch((err: Error) => send(res, 500, 'text/plain', `${err.message}\n`))
        .then(() => boundFlush(res, clock, ms, fired), () => undefined);
    });
    this.accepted = new BoundedAccept(this.server, d.limits, clock, (l) => d.onLimit?.(l));
  }

  listen(): Promise<AddressInfo> {
    return listenDualStack(this.accepted.server, this.d.port, this.d.address, this.d.ipv6Address ?? '', this.d.logger);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = requestTarget(req);
    if (typeof target === 'string') return send(res, 400, 'text/plain', `${target}\n`);
    const { url, host } = target;
    // HEAD is GET without the content (RFC 9110 section 9.3.2; every general-purpose server
    // supports both, section 9.1): node writes no body for a HEAD request, the headers stay.
    const key = `${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname}`;
    const badHost = adminHostRefusal(host);
    if (badHost) {
      this.d.logger.warn('admin request refused', { code: 'FORBIDDEN', path: url.pathname, peer: req.socket.remoteAddress, reason: badHost });
      return send(res, 403, 'text/plain', `${badHost}\n`);
    }
    if (req.method === 'POST' && ENDPOINTS.some(([m, p]) => m === 'POST' && p.split('?')[0] === url.pathname)) {
      const refusal = actionRefusal(req);
      if (refusal) {
        this.d.logger.warn('admin action refused', { code: 'FORBIDDEN', path: url.pathname, peer: req.socket.remoteAddress, reason: refusal });
        return send(res, 403, 'text/plain', `${refusal}\n`);
      }
    }
    switch (key) {
      case 'GET /':
        return send(res, 200, 'text/plain', ENDPOINT_LIST);
      case 'GET /ready': {
        const r = this.d.ready();
        return send(res, r.ready ? 200 : 503, 'text/plain', `${r.reason}\n`);
      }
      case 'GET /live':
        return send(res, 200, 'text/plain', 'live\n');
      case 'GET /metrics': {
        const m = await this.d.metrics();
        return send(res, 200, m.contentType, m.body);
      }
      case 'GET /config_dump':
        return json(res, this.d.configDump());
      case 'GET /clusters':
        return json(res, await this.d.clusters());
      case 'GET /certs':
        return json(res, this.d.certs());
      case 'GET /debug/route': {
        if (!this.d.debugRoute) return send(res, 404, 'text/plain', 'no routes on this admin port\n');
        const headers: Record<string, string | string[]> = {};
        for (const h of url.searchParams.getAll('header')) {
          const colon = h.indexOf(':');
          if (colon <= 0) return json(res, { error: `header must be name:value, got ${JSON.stringify(h)}` }, 400);
          const name = h.slice(0, colon).trim().toLowerCase();
          const value = h.slice(colon + 1).trim();
          const old = field(headers, name);
          setField(headers, name, old === undefined ? value : [...(typeof old === 'string' ? [old] : old), value]);
        }
        const [status, body] = this.d.debugRoute({
          authority: url.searchParams.get('authority') ?? '',
          path: url.searchParams.get('path') ?? '/',
          method: (url.searchParams.get('method') ?? 'GET').toUpperCase(),
          headers,
        });
        return json(res, body, status);
      }
      case 'POST /logging': {
        const level = url.searchParams.get('level') ?? '';
        if (!isLevel(level)) return send(res, 400, 'text/plain', `level must be one of debug, info, warn, error\n`);
        this.d.logger.level = level;
        this.d.logger.info('log level changed', { level });
        return send(res, 200, 'text/plain', `level=${level}\n`);
      }
      case 'POST /drain':
        this.d.drain();
        return send(res, 202, 'text/plain', 'draining\n');
      default: {
        // A 405 names the methods the resource has (RFC 9110 section 15.5.6: it MUST send Allow).
        const allowed = ENDPOINTS.filter(([, p]) => p.split('?')[0] === url.pathname).map(([m]) => (m === 'GET' ? 'GET, HEAD' : m));
        if (allowed.length > 0)
          return send(res, 405, 'text/plain', `method ${req.method} not allowed on ${url.pathname}\n`, { allow: allowed.join(', ') });
        return send(res, 404, 'text/plain', `no admin endpoint ${url.pathname}; GET / lists them\n`);
      }
    }
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.accepted.server.close(() => r());
      this.accepted.destroyAll();
    });
  }
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/**
 * Every JSON answer through the one replacer the control plane's admin port uses
 * (contract/jwks-uri-shown.ts secretsHidden): a jwksUri without its query, and the values of
 * an AuthorizationPolicy condition on request.headers[...] or request.auth.claims[...] (a
 * static API key) hidden one for one, whichever answer carries them (/config_dump's local
 * and in-force policy, /debug/route).
 */
function json(res: ServerResponse, v: unknown, status = 200): void {
  send(res, status, 'application/json', JSON.stringify(v, secretsHidden, 2) + '\n');
}
