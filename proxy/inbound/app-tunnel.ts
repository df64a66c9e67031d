import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { splice } from '../net/tcp-tunnel.js';

export interface AppTunnelDeps {
  readonly appAddress: string;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
}

/**
 * Opaque TCP from a downstream (a CONNECT stream from a peer sidecar, or a plaintext
 * connection on a PERMISSIVE port) to the app's port, counted in the istio_tcp_* metrics.
 */
export function tunnelToApp(
  d: AppTunnelDeps,
  port: number,
  down: Duplex,
  hooks: { readonly connected?: () => void; readonly failed: (err: Error) => void },
): void {
  const up = netConnect({ host: d.appAddress, port });
  const labels = { direction: 'inbound', destination_service: String(port) } as const;
  let connected = false;
  up.once('connect', () => {
    connected = true;
    hooks.connected?.();
    d.metrics.tcpOpened.inc(labels);
    splice(down, up, (b) => {
      d.metrics.tcpClosed.inc(labels);
      d.metrics.tcpReceived.inc(labels, b.aToB);
      d.metrics.tcpSent.inc(labels, b.bToA);
    });
  });
  up.once('error', (err) => {
    if (!connected) hooks.failed(err);
    else down.destroy();
    d.logger.warn('inbound tunnel to app failed', { code: 'CONNECT_REFUSED', port, error: err.message });
  });
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
