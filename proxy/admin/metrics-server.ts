import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createHttpServer } from '../../common/node-http.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { listenDualStack } from '../net/listen-dual-stack.js';
import type { AppProber } from './app-prober.js';
import { boundFlush, DEFAULT_DELAYED_CLOSE_MS } from '../net/delayed-close.js';
import { BoundedAccept } from '../../common/bounded-accept.js';

export interface MetricsServerDeps {
  readonly address: string;
  readonly ipv6Address: string;
  readonly port: number;
  readonly logger: Logger;
  readonly clock: Clock;
  /**
   * The proxy's limits: the request head must arrive within requestHeadersTimeoutMs; at most
   * maxConnectionsPerListener open; the response written with no more than
   * delayedCloseTimeoutMs (default DEFAULT_DELAYED_CLOSE_MS) without progress, or the
   * connection is destroyed (a scraper that does not read must not hold a slot).
   */
  readonly limits: { readonly requestHeadersTimeoutMs: number; readonly maxConnectionsPerListener: number; readonly delayedCloseTimeoutMs?: number };
  /** Counts a limit firing (wren_limit_exceeded_total{direction="metrics"}). */
  readonly onLimit: (limit: 'max-connections' | 'request-headers-timeout' | 'delayed-close-timeout') => void;
  /** Same as the admin port's /ready. */
  readonly ready: () => { ready: boolean; reason: string };
  /** Same registry output as the admin port's /metrics (aggregated over workers when concurrency > 1). */
  readonly metrics: () => Promise<{ contentType: string; body: string }>;
  /** The app's rewritten kubelet probes (app-prober.ts); absent: none configured, every /app-health/ path is 404. */
  readonly appProbes?: Pick<AppProber, 'has' | 'run'>;
}

/** Istio's merged-metrics path on 15020 (what the injector's prometheus.io/path annotation names), `/metrics` as an alias. */
const METRICS_PATHS = new Set(['/stats/prometheus', '/metrics']);
const READY_PATH = '/healthz/ready';

/**
 * The read-only Prometheus scrape port (Istio's 15020, Linkerd's 4191). The admin port
 * stays on localhost because it can drain the proxy and dumps its config; Prometheus in
 * a cluster scrapes the pod IP, so the metrics need a port of their own that serves
 * nothing else: GET/HEAD /stats/prometheus (/metrics), /healthz/ready and the app's
 * rewritten kubelet probes /app-health/<container>/<livez|readyz|startupz> (Istio's 15020
 * serves them too; app-prober.ts runs them), any other path 404, any other method 405.
 * Not intercepted by iptables (iptables-rules.ts proxy-ports), so kubelet reaches it.
 *
 * Bounded like the data-path listeners: connections over the limit are refused at accept
 * and a request head that has not arrived within the headers timeout (from accept)
 * closes the connection, both counted. One request per connection (`connection: close`):
 * a scrape every few seconds gains nothing from keep-alive, and no idle connection is
 * left to hold a slot. It runs on the main thread; a scrape never touches the data path
 * beyond reading the registry.
 */
export class MetricsServer {
  private readonly http: HttpServer;
  private readonly accepted: BoundedAccept;

  constructor(private readonly d: MetricsServerDeps) {
    this.http = createHttpServer({ maxHeaderSize: 8192 }, (req, res) => this.route(req, res));
    this.http.on('clientError', (_e, socket: Socket) => socket.destroy());
    this.accepted = new BoundedAccept(this.http, d.limits, d.clock, d.onLimit);
  }

  listen(): Promise<AddressInfo> {
    return listenDualStack(this.accepted.server, this.d.port, this.d.address, this.d.ipv6Address, this.d.logger);
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    this.accepted.headArrived(req.socket);
    const path = (req.url ?? '/').split('?')[0];
    const probe = path.startsWith('/app-health/') && this.d.appProbes?.has(path) === true;
    const known = METRICS_PATHS.has(path) || path === READY_PATH || probe;
    if (!known) return this.send(res, 404, 'text/plain', `not found: this port serves only GET /stats/prometheus, GET ${READY_PATH} and the pod's GET /app-health/<container>/<probe>\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.send(res, 405, 'text/plain', `method ${req.method} not allowed on ${path}\n`, { allow: 'GET, HEAD' });
    if (path === READY_PATH) {
      const r = this.d.ready();
      return this.send(res, r.ready ? 200 : 503, 'text/plain', `${r.reason}\n`);
    }
    // kubelet fails a probe on any status >= 400; 503 says the app (not this port) is unwell.
    if (probe) return void this.d.appProbes!.run(path).then((o) => this.send(res, o.result === 'success' ? 200 : 503, 'text/plain', `${o.reason}\n`));
    this.d.metrics().then(
      (m) => this.send(res, 200, m.contentType, m.body),
      (e: Error) => this.send(res, 500, 'text/plain', `${e.message}\n`),
    );
  }

  private send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), connection: 'close', ...extra });
    res.end(res.req.method === 'HEAD' ? undefined : body);
    boundFlush(res, this.d.clock, this.d.limits.delayedCloseTimeoutMs ?? DEFAULT_DELAYED_CLOSE_MS, this.fired);
  }

  private readonly fired = (): void => this.d.onLimit('delayed-close-timeout');

  close(): Promise<void> {
    return new Promise((r) => {
      this.accepted.server.close(() => r());
      this.accepted.destroyAll();
    });
  }
}
