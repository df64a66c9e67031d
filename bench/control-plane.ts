import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { fullResponse, loadDiscoveryProto, type DiscoveryResponse } from '../contract/discovery.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from '../test/fake-kube-api.js';

/**
 * Control-plane fan-out benchmark, in one process, over real gRPC on loopback.
 *
 * Path measured: an EndpointSlice update written to the fake Kubernetes API server ->
 * watch event -> client-node informer -> KubernetesSource (validate, translate one
 * Service) -> MeshStore commit -> delta -> every subscriber. Latency is from the write
 * to the moment the LAST subscriber has the response (p50/p99 over the changes).
 *
 * Subscribers are simulated proxies: a raw Discovery.Stream each, on its own HTTP/2
 * connection (local subchannel pool), decoding and ACKing every response, but not
 * rebuilding snapshots (so the CPU figure is mostly the control plane's; it still
 * includes the subscribers' protobuf decoding and the fake API server, all in-process).
 * Endpoints live in EndpointSlices of 100 (the controller's default maximum); each
 * change flips the readiness of one endpoint.
 */
export interface ControlPlaneBenchOptions {
  readonly subscribers?: readonly number[];
  readonly endpoints?: readonly number[];
  readonly changes?: number;
  readonly print?: (line: string) => void;
}

interface Scenario {
  subscribers: number;
  endpoints: number;
  changes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  cpuMsPerChange: number;
  rssMb: number;
  deltaBytesPerSubscriber: number;
  fullSnapshotBytes: number;
  bytesPushedPerChange: number;
}

const pct = (v: number[], p: number): number => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

const ip = (i: number): string => `10.${Math.floor(i / 65536) % 256}.${Math.floor(i / 256) % 256}.${i % 256}`;

async function scenario(subscribers: number, endpoints: number, changes: number): Promise<Scenario> {
  const api = await FakeKubeApi.start({ bookmarkIntervalMs: 5_000 });
  api.apply('services', serviceJson('web', 'bench', [{ name: 'http', port: 80, targetPort: 8080 }]));
  for (let i = 0; i < endpoints; i++) api.apply('pods', podJson(`web-${i}`, 'bench', 'web', ip(i + 256)));
  const sliceCount = Math.ceil(endpoints / 100);
  const ready = new Array<boolean>(endpoints).fill(true);
  const writeSlice = (s: number): void => {
    const eps = [];
    for (let i = s * 100; i < Math.min(endpoints, (s + 1) * 100); i++) eps.push({ ip: ip(i + 256), pod: `web-${i}`, ready: ready[i] });
    api.apply('endpointslices', endpointSliceJson(`web-${s}`, 'bench', 'web', [{ name: 'http', port: 8080 }], eps));
  };
  for (let s = 0; s < sliceCount; s++) writeSlice(s);
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig() }),
  });
  await cp.whenReady();

  const { Client } = loadDiscoveryProto();
  const received = new Array<number>(subscribers).fill(0);
  const lastAt = new Array<number>(subscribers).fill(0);
  const clients: grpc.Client[] = [];
  const streams: grpc.ClientDuplexStream<unknown, DiscoveryResponse>[] = [];
  for (let i = 0; i < subscribers; i++) {
    const c = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const st = (c as unknown as { Stream(): grpc.ClientDuplexStream<unknown, DiscoveryResponse> }).Stream();
    st.on('data', (r: DiscoveryResponse) => {
      received[i]++;
      lastAt[i] = performance.now();
      st.write({ ack: { version: r.version, nonce: r.nonce } });
    });
    st.on('error', () => undefined);
    st.write({ subscribe: { identity: { spiffeId: `spiffe://cluster.local/ns/bench/sa/client-${i}`, namespace: 'bench', pod: `client-${i}` }, services: [] } });
    clients.push(c);
    streams.push(st);
  }
  const waitAll = async (target: number[], timeoutMs: number): Promise<void> => {
    const end = performance.now() + timeoutMs;
    while (received.some((n, i) => n < target[i])) {
      if (performance.now() > end) throw new Error(`bench: subscribers did not converge (${received.filter((n, i) => n >= target[i]).length}/${subscribers})`);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  await waitAll(new Array(subscribers).fill(1), 60_000);
  // Let the ACKs of the initial snapshots land before measuring.
  await new Promise((r) => setTimeout(r, 200));

  let pushedBytes = 0;
  let deltaBytes = 0;
  const off = cp.discovery.onPush((p) => {
    pushedBytes += p.bytes;
    if (!p.full) deltaBytes = p.bytes;
  });
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let c = 0; c < changes; c++) {
    const target = received.map((n) => n + 1);
    const idx = (c * 37) % endpoints;
    ready[idx] = !ready[idx];
    const t0 = performance.now();
    writeSlice(Math.floor(idx / 100));
    await waitAll(target, 30_000);
    latencies.push(Math.max(...lastAt) - t0);
    await new Promise((r) => setTimeout(r, 20)); // ACKs land; the next change starts from a quiet state
  }
  const cpu = process.cpuUsage(cpu0);
  off();
  const fullSnapshotBytes = loadDiscoveryProto().encodeResponse(fullResponse(cp.store.view.version, 'f', cp.store.view.services.values())).length;
  const rssMb = process.memoryUsage().rss / 1048576;

  for (const st of streams) st.cancel();
  for (const c of clients) c.close();
  await cp.close(200);
  await api.close();
  return {
    subscribers, endpoints, changes,
    p50Ms: pct(latencies, 50), p99Ms: pct(latencies, 99), maxMs: Math.max(...latencies),
    cpuMsPerChange: (cpu.user + cpu.system) / 1000 / changes,
    rssMb, deltaBytesPerSubscriber: deltaBytes, fullSnapshotBytes, bytesPushedPerChange: pushedBytes / changes,
  };
}

export async function runControlPlaneBench(opts: ControlPlaneBenchOptions = {}): Promise<Record<string, unknown>> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const subs = opts.subscribers ?? [100, 1000];
  const eps = opts.endpoints ?? [10, 100, 1000];
  const changes = opts.changes ?? 20;
  const results: Scenario[] = [];
  print('control plane: EndpointSlice change -> last subscriber (Kubernetes source via fake API server, real gRPC on loopback)');
  print('subs  endpoints  p50 ms  p99 ms  max ms  cpu ms/change  rss MB  delta B/sub  full B   pushed B/change');
  for (const s of subs) {
    for (const e of eps) {
      const r = await scenario(s, e, changes);
      results.push(r);
      print(
        `${String(s).padStart(4)}  ${String(e).padStart(9)}  ${r.p50Ms.toFixed(1).padStart(6)}  ${r.p99Ms.toFixed(1).padStart(6)}  ${r.maxMs.toFixed(1).padStart(6)}  ` +
          `${r.cpuMsPerChange.toFixed(1).padStart(13)}  ${r.rssMb.toFixed(0).padStart(6)}  ${String(r.deltaBytesPerSubscriber).padStart(11)}  ${String(r.fullSnapshotBytes).padStart(7)}  ${r.bytesPushedPerChange.toFixed(0).padStart(15)}`,
      );
    }
  }
  return { source: 'kubernetes (fake API server + @kubernetes/client-node informers)', changesPerScenario: changes, scenarios: results };
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void runControlPlaneBench().then(() => process.exit(0));
}
