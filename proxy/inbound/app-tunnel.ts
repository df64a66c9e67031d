import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { TcpLabels } from '../metrics/workload-labels.js';
import { splice, type SpliceIdle } from '../net/tcp-tunnel.js';
import { TcpConnector } from '../net/connector.js';
import { responseFlag, toProxyError, type ProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';
import { APP_CONNECT_TIMEOUT_MS } from './app-connector.js';
import type { AccessLog } from '../access-log/access-log.js';
import { inboundTunnelLine } from '../access-log/tunnel-log.js';

export interface AppTunnelDeps {
  readonly appAddress: string;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The listener's idle bound for every tunnel (limits.tcpIdleTimeoutMs): one object, not one per tunnel. */
  readonly tunnelIdle: SpliceIdle;
  /** The access log: a line per connection when it closes (in the listeners' deps from proxy.ts). */
  readonly accessLog?: AccessLog;
}

/**
 * Opaque TCP from a downstream (a CONNECT stream from a peer sidecar, or a plaintext
 * connection on a PERMISSIVE port) to the app's port, counted in the istio_tcp_* metrics
 * under `labels` (reporter="destination": the caller's from the CONNECT stream's peer
 * metadata, or all unknown for plaintext).
 * The socket comes from the same TCP connector as the outbound side's (net/connector.ts),
 * with the app connect timeout; a failure reaches `hooks.failed` as a typed ProxyError
 * (CONNECT_REFUSED, CONNECT_TIMEOUT...), for the caller to answer through the error table.
 */
export function tunnelToApp(
  d: AppTunnelDeps,
  port: number,
  down: Duplex,
  hooks: {
    readonly connected?: () => void;
    readonly failed: (err: ProxyError) => void;
    /**
     * Called with the app's socket once connected, before anything is spliced: `splice()`
     * goes on, or the caller destroys `up` and takes `down` elsewhere (a silent client that
     * then spoke HTTP, plaintext-inbound.ts afterSilence()).
     */
    readonly beforeSplice?: (up: Duplex, splice: () => void) => void;
  },
  labels: TcpLabels,
): void {
  const ep = { address: d.appAddress, port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true };
  const line = inboundTunnelLine(d.accessLog, down, d.appAddress, port);
  new TcpConnector({ clock: d.clock }).connect(ep, APP_CONNECT_TIMEOUT_MS).then(
    ({ socket: up }) => {
      if (down.destroyed) return void up.destroy();
      hooks.connected?.();
      const go = (): void => {
        const flow = d.metrics.openTcpFlow(
          labels,
          splice(down, up, (b) => {
            d.metrics.closeTcpFlow(flow);
            line?.closed(b.aToB, b.bToA);
          }, d.tunnelIdle),
        );
      };
      if (hooks.beforeSplice) hooks.beforeSplice(up, go);
      else go();
    },
    (err: unknown) => {
      const e = toProxyError(err, 'CONNECT_FAILED');
      d.metrics.tcpFailed(labels, responseFlag(e.label));
      d.logger.warn('inbound tunnel to app failed', { code: e.code, port, error: e.message });
      line?.failed(e);
      hooks.failed(e);
    },
  );
}

/**
 * A TCP health check relayed by the inbound sidecar: does the app's port accept a
 * connection? Istio's agent likewise checks the port itself for rewritten TCP probes,
 * since through the redirect every port would look open. The socket is closed at once.
 * Returns a cancel function (the prober gave up: its timeout reset the stream).
 */
export function probeApp(d: Pick<AppTunnelDeps, 'appAddress'>, port: number, done: (ok: boolean) => void): () => void {
  const s = netConnect({ host: d.appAddress, port });
  s.once('connect', () => {
    s.destroy();
    done(true);
  });
  s.once('error', () => done(false));
  return () => s.destroy();
}
