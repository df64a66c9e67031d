import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Endpoint, Service } from '../../contract/model.js';
import { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { WorkloadLabels } from '../metrics/workload-labels.js';
import { encodePeerMetadata } from '../metrics/peer-metadata.js';
import { edgeTable } from './edge-stats.js';

const SELF = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const CALLER = 'spiffe://cluster.local/ns/shop/sa/front';
const ep = (identity: string, name: string): Endpoint => ({
  address: '10.0.0.7', port: 8080, proxyPort: identity ? 15006 : 0, identity, weight: 1, zone: '', ready: true, workload: { name, namespace: 'shop', app: name, version: 'v1' },
});
const api: Service = { name: 'api', namespace: 'shop', clusterIPs: [], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [] }] };
const route = { service: api, port: api.ports[0] };

/** The proxy's real metrics objects, filled as the record-metrics layer fills them, read back through their text. */
function metrics() {
  return new ProxyMetrics({ local: new WorkloadLabels({ name: 'web', namespace: 'shop', app: 'web', version: 'v1' }, () => SELF) });
}

describe('edgeTable: the proxy\'s metrics folded into one cumulative row per edge', () => {
  test('outbound and inbound edges: success/failure by Linkerd\'s classes, per-bucket latencies, TCP, mTLS', async () => {
    const m = metrics();
    const out = m.local.forOutbound(route, ep(API, 'api'));
    m.requests.inc(out.labels('http', '200', '', '-'), 7);
    m.requests.inc(out.labels('http', '404', '', '-'), 1); // a 4xx is the caller's problem: a success
    m.requests.inc(out.labels('http', '503', '', '-'), 2);
    m.requests.inc(out.labels('grpc', '200', '14', '-'), 1); // gRPC UNAVAILABLE
    m.requests.inc(out.labels('http', '0', '', 'UF'), 1); // no response
    m.duration.observe(out.labels('http', '200', '', '-'), 3);
    m.duration.observe(out.labels('http', '503', '', '-'), 30);
    m.duration.observe(out.labels('http', '503', '', '-'), 5000);
    const inb = m.local.forInbound(CALLER, encodePeerMetadata({ name: 'front', namespace: 'shop', app: 'front', version: 'v1' }, { name: 'web', namespace: 'shop' } as Service), true);
    m.requests.inc(inb.labels('http', '200', '', '-'), 4);
    const plain = m.local.forOutbound(route, ep('', 'legacy'));
    m.tcpOpened.inc(plain.tcp, 3);
    m.tcpClosed.inc(plain.tcp, 1);
    const t = edgeTable(await m.registry.metrics(), 10);
    expect(t.latencyBoundsMs.slice(0, 4)).toEqual([0.5, 1, 5, 10]);
    expect(t.dropped).toBe(0);
    const [o, i, tcp] = t.edges;
    expect(o).toMatchObject({
      direction: 'outbound', peerWorkload: 'api', peerNamespace: 'shop', peerIdentity: API, service: 'api.shop', destinationWorkload: 'api', success: 8, failure: 4, mtls: true,
      latencySumMs: 5033, tcpOpened: 0,
    });
    const at = (ms: number) => t.latencyBoundsMs.indexOf(ms);
    expect(o.latencyBuckets[at(5)]).toBe(1);
    expect(o.latencyBuckets[at(50)]).toBe(1);
    expect(o.latencyBuckets[at(5000)]).toBe(1);
    expect(o.latencyBuckets.reduce((a, b) => a + b)).toBe(3);
    expect(i).toMatchObject({ direction: 'inbound', peerWorkload: 'front', peerIdentity: CALLER, service: 'web.shop', destinationWorkload: 'web', success: 4, failure: 0, mtls: true });
    expect(tcp).toMatchObject({ direction: 'outbound', peerWorkload: 'legacy', service: 'api.shop', tcpOpened: 3, tcpClosed: 1, mtls: false, success: 0 });
  });

  test('a request its client cancelled before any response (response_code 0, DC) is no failure of the destination, as Linkerd classifies it; no response for another reason still is (adv18)', async () => {
    const m = metrics();
    const out = m.local.forOutbound(route, ep(API, 'api'));
    m.requests.inc(out.labels('http', '200', '', '-'), 5);
    m.requests.inc(out.labels('http', '0', '', 'DC'), 3); // the client left (was a 499, a success)
    m.requests.inc(out.labels('grpc', '0', '', 'DC'), 1);
    m.requests.inc(out.labels('http', '0', '', 'UF'), 1);
    const [o] = edgeTable(await m.registry.metrics(), 10).edges;
    expect(o).toMatchObject({ success: 9, failure: 1 });
  });

  test('at most maxEdges edges, the busiest; the rest counted', async () => {
    const m = metrics();
    for (let n = 1; n <= 5; n++) m.requests.inc(m.local.forOutbound(route, ep(API, `api-${n}`)).labels('http', '200', '', '-'), n);
    const t = edgeTable(await m.registry.metrics(), 2);
    expect(t.edges.map((e) => e.peerWorkload)).toEqual(['api-5', 'api-4']);
    expect(t.dropped).toBe(3);
  });
});
