import type { EdgeStats } from '../../contract/discovery.js';
import { parsePromText, type PromSample } from './prom-text.js';

const REQUESTS = 'istio_requests_total';
const BUCKET = 'istio_request_duration_milliseconds_bucket';
const SUM = 'istio_request_duration_milliseconds_sum';
const OPENED = 'istio_tcp_connections_opened_total';
const CLOSED = 'istio_tcp_connections_closed_total';
const NAMES = new Set([REQUESTS, BUCKET, SUM, OPENED, CLOSED]);
const UNKNOWN = 'unknown';

export interface EdgeTable {
  readonly latencyBoundsMs: number[];
  /** The busiest `maxEdges` edges (by requests, then TCP connections), in a stable order. */
  readonly edges: EdgeStats[];
  /** Edges left out for the cap. */
  readonly dropped: number;
}

/**
 * Success or failure of a request series, as Linkerd classifies responses: a 5xx, no
 * response at all (response_code 0: a local failure, reset or timeout) or a gRPC status
 * other than OK is a failure; anything else a success. A request its client cancelled
 * before any response (response_code 0 with flag DC, Istio's labels for it since the
 * metrics stopped counting the 499 nobody received) is no failure of the destination:
 * Linkerd fixed counting cancellations as failures as a P0 bug (linkerd2#3281), and they
 * were successes here while they were 499s, so a service whose callers give up (timeouts,
 * long polls, navigation) would turn red on the topology.
 */
function failed(l: Readonly<Record<string, string>>): boolean {
  const code = l['response_code'] ?? '';
  if (code === '0') return !(l['response_flags'] ?? '').split(',').includes('DC');
  const grpc = l['grpc_response_status'] ?? '';
  return code.startsWith('5') || (grpc !== '' && grpc !== '0');
}

/** The edge of one series: who the other side is, from the reporter's point of view (Istio's labels, workload-labels.ts). */
function edgeOf(l: Readonly<Record<string, string>>): EdgeStats | null {
  const outbound = l['reporter'] === 'source';
  if (!outbound && l['reporter'] !== 'destination') return null;
  const svcName = l['destination_service_name'] ?? UNKNOWN;
  const svcNs = l['destination_service_namespace'] ?? UNKNOWN;
  return {
    direction: outbound ? 'outbound' : 'inbound',
    peerWorkload: (outbound ? l['destination_workload'] : l['source_workload']) ?? UNKNOWN,
    peerNamespace: (outbound ? l['destination_workload_namespace'] : l['source_workload_namespace']) ?? UNKNOWN,
    peerIdentity: (outbound ? l['destination_principal'] : l['source_principal']) ?? UNKNOWN,
    service: svcName === UNKNOWN ? '' : `${svcName}.${svcNs}`,
    destinationWorkload: l['destination_workload'] ?? UNKNOWN,
    success: 0, failure: 0, latencyBuckets: [], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0,
    // The source reporter's connection_security_policy is always "unknown" (as Istio's): an
    // outbound edge is mTLS when the endpoint is meshed, i.e. has an identity to verify.
    mtls: outbound ? (l['destination_principal'] ?? UNKNOWN) !== UNKNOWN : l['connection_security_policy'] === 'mutual_tls',
  };
}

const keyOf = (e: EdgeStats): string =>
  [e.direction, e.peerWorkload, e.peerNamespace, e.peerIdentity, e.service, e.destinationWorkload, e.mtls ? 'm' : 'p'].join('\n');

/**
 * Folds the proxy's own metrics text into one cumulative row per edge (direction, peer
 * workload/namespace/identity, destination service and workload, mTLS), summing the series
 * that differ only by response code, protocol or flags. Runs once per report interval, off
 * the data path.
 */
export function edgeTable(metricsText: string, maxEdges: number): EdgeTable {
  const samples = parsePromText(metricsText, NAMES);
  const bounds = new Set<number>();
  for (const s of samples) if (s.name === BUCKET && s.labels['le'] !== '+Inf') bounds.add(Number(s.labels['le']));
  const latencyBoundsMs = [...bounds].sort((a, b) => a - b);
  const boundIndex = new Map(latencyBoundsMs.map((b, i) => [b, i]));
  const edges = new Map<string, EdgeStats>();
  const edgeFor = (s: PromSample): EdgeStats | null => {
    const fresh = edgeOf(s.labels);
    if (!fresh) return null;
    const key = keyOf(fresh);
    let e = edges.get(key);
    if (!e) {
      fresh.latencyBuckets = new Array<number>(latencyBoundsMs.length + 1).fill(0);
      edges.set(key, (e = fresh));
    }
    return e;
  };
  for (const s of samples) {
    const e = edgeFor(s);
    if (!e) continue;
    if (s.name === REQUESTS) {
      if (failed(s.labels)) e.failure += s.value;
      else e.success += s.value;
    } else if (s.name === BUCKET) {
      // Cumulative buckets (le) summed over the series now; made per-bucket below.
      const le = s.labels['le'];
      e.latencyBuckets[le === '+Inf' ? latencyBoundsMs.length : boundIndex.get(Number(le))!] += s.value;
    } else if (s.name === SUM) e.latencySumMs += s.value;
    else if (s.name === OPENED) e.tcpOpened += s.value;
    else if (s.name === CLOSED) e.tcpClosed += s.value;
  }
  for (const e of edges.values()) {
    for (let i = e.latencyBuckets.length - 1; i > 0; i--) e.latencyBuckets[i] -= e.latencyBuckets[i - 1];
  }
  const all = [...edges.entries()]
    .sort(([ka, a], [kb, b]) => b.success + b.failure - (a.success + a.failure) || b.tcpOpened - a.tcpOpened || (ka < kb ? -1 : ka > kb ? 1 : 0))
    .map(([, e]) => e);
  return { latencyBoundsMs, edges: all.slice(0, maxEdges), dropped: Math.max(0, all.length - maxEdges) };
}
