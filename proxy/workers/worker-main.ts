import { parentPort, workerData } from 'node:worker_threads';
import { subscribe } from 'node:diagnostics_channel';
import { createLogger } from '../../common/logger.js';
import { ListenError } from '../../common/listen.js';
import { Counter } from '../metrics/prom.js';
import { TlsIdentity } from '../tls/tls-identity.js';
import { Proxy } from '../proxy.js';
import type { FromWorker, ToWorker, WorkerData } from './messages.js';

/**
 * One listener worker (config `concurrency` > 1): a Proxy whose outbound, inbound and
 * upstream listeners bind with SO_REUSEPORT next to its siblings', and no admin port.
 * The main thread owns the control plane, the certificate and /metrics; this thread
 * applies what it is sent and answers for its own registry (worker-pool.ts).
 */
const port = parentPort!;
const data = workerData as WorkerData;
const post = (m: FromWorker): void => port.postMessage(m);
const logger = createLogger({ level: data.logLevel, sink: (line) => post({ t: 'log', line }), base: { component: 'proxy', worker: data.id } });
const tls = new TlsIdentity(data.material);

const proxy = await Proxy.start({ config: data.config, tls, logger, staticMesh: false, worker: { id: data.id, shared: data.shared } }).catch((e: unknown) => {
  const l = e instanceof ListenError ? e : null;
  const why = (l?.cause ?? e) as NodeJS.ErrnoException;
  post({ t: 'start-failed', listener: l?.listener ?? 'worker', address: l?.address ?? '', port: l?.port ?? 0, code: why?.code, message: why?.message ?? String(e) });
  return null;
});

if (proxy) {
  // Which worker accepted a connection: the kernel spreads them over the SO_REUSEPORT
  // sockets, and this counter (summed into /metrics by worker label) shows the spread.
  const accepted = new Counter({ name: 'wren_worker_connections_total', help: 'Connections accepted by each listener worker (config concurrency)', labelNames: ['worker'], registers: [proxy.metrics.registry] });
  const worker = String(data.id);
  accepted.inc({ worker }, 0);
  subscribe('net.server.socket', () => accepted.inc({ worker }));
  const apply = (seq: number, snapshot: Parameters<Proxy['applySnapshot']>[0]): void => {
    try {
      proxy.applySnapshot(snapshot);
      post({ t: 'applied', seq });
    } catch (e) {
      post({ t: 'apply-failed', seq, error: (e as Error).message });
    }
  };
  // Registered before the first snapshot is applied, so its clusters (a restarted worker's,
  // or a static mesh's) reach the main thread at once and replace what it held for the slot.
  proxy.onHealthChange(() => post({ t: 'health', clusters: proxy.clusterStates() }));
  // An ejection or uneject this worker decided for the sidecar: the main thread relays it to the others.
  proxy.onOutlierChange((cluster, endpoint) => post({ t: 'outlier', cluster, endpoint }));
  if (data.snapshot) apply(data.snapshot.seq, data.snapshot.snapshot);
  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'snapshot':
        return apply(m.seq, m.snapshot);
      case 'rotate':
        return tls.rotate(m.material);
      case 'metrics':
        return void proxy.metrics.registry.getMetricsAsJSON().then((json) => post({ t: 'metrics', id: m.id, json }));
      case 'decisions':
        return post({ t: 'decisions', id: m.id, decisions: proxy.ownDecisions() });
      case 'clusters':
        return post({ t: 'clusters', id: m.id, clusters: proxy.clusterStates() });
      case 'outlier':
        return proxy.outlierChanged(m.cluster, m.endpoint);
      case 'log-level':
        logger.level = m.level;
        return;
      case 'drain':
        // Drained, not closed: the pool closes every worker once all are drained, so a worker
        // with nothing in flight does not close the outbound connections the app holds to it
        // while another still drains (worker-pool.ts drain()).
        return void proxy.quiesce(m.minDrainMs).then(() => post({ t: 'drained' }));
      case 'close':
        return void proxy.close().then(() => post({ t: 'closed' }));
    }
  });
  post({ t: 'listening', ports: { outbound: proxy.outboundPort, inbound: proxy.inboundPort, upstreams: proxy.upstreamPorts } });
}
