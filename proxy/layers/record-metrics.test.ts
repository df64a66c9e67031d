import { PassThrough, Readable } from 'node:stream';
import { FakeClock } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Endpoint, Service } from '../../contract/model.js';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { MAX_OUTCOMES_PER_PEER, MAX_PEER_VALUES_PER_CALLER, WorkloadLabels } from '../metrics/workload-labels.js';
import { recordMetrics } from './record-metrics.js';
import { attachState } from './request-state.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';

const SELF = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const ep: Endpoint = {
  address: '10.0.0.7', port: 8080, proxyPort: 15006, identity: API, weight: 1, zone: '', ready: true,
  workload: { name: 'api-v2', namespace: 'shop', app: 'api', version: 'v2' },
};
const service: Service = { name: 'api', namespace: 'shop', clusterIPs: [], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [ep] }] };
const route = { service, port: service.ports[0] };

function setup() {
  const clock = new FakeClock(5_000);
  const metrics = new ProxyMetrics({ local: new WorkloadLabels({ name: 'web-v1', namespace: 'shop', app: 'web', version: 'v1' }, () => SELF) });
  return { clock, metrics };
}

function request(over: Partial<ProxyRequest> & { headers?: Record<string, string> }, clock: FakeClock): ProxyRequest {
  return {
    method: 'POST', scheme: 'http', authority: 'api', path: '/x', headers: {}, body: null, trailers: () => undefined, origProto: 'HTTP/1.1',
    source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: clock.now(), ...over,
  } as ProxyRequest;
}

/** The one series of `name` (a Prometheus text line's labels), with its value. */
async function series(metrics: ProxyMetrics, name: string): Promise<{ labels: Record<string, string>; value: number }[]> {
  const json = await metrics.registry.getSingleMetric(name)!.get();
  return json.values.filter((v) => !('metricName' in v) || v.metricName === name || v.metricName === `${name}_sum`).map((v) => ({ labels: v.labels as Record<string, string>, value: v.value }));
}

test('outbound (reporter=source): every Istio label from this workload, the route and the picked endpoint; duration to the last byte; body sizes', async () => {
  const { clock, metrics } = setup();
  const resBody = new PassThrough();
  const inner: HttpService = async (req) => {
    req.route = route;
    req.endpoint = ep;
    req.body!.resume();
    return { status: 201, headers: {}, body: resBody, trailers: () => undefined } as ProxyResponse;
  };
  const reqBody = Readable.from([Buffer.alloc(300), Buffer.alloc(200)], { objectMode: false });
  const res = await recordMetrics(metrics, 'outbound', clock)(inner)(request({ body: reqBody }, clock));
  await new Promise((r) => reqBody.once('end', r));
  clock.advance(40);
  expect(await series(metrics, 'istio_requests_total')).toEqual([]); // counted when the body ends, not at headers
  res.body!.resume();
  resBody.end(Buffer.alloc(1234));
  await new Promise((r) => res.body!.once('end', r));
  const labels = {
    reporter: 'source',
    source_workload: 'web-v1', source_workload_namespace: 'shop', source_principal: SELF, source_app: 'web', source_version: 'v1',
    destination_workload: 'api-v2', destination_workload_namespace: 'shop', destination_principal: API, destination_app: 'api', destination_version: 'v2',
    destination_service: 'api.shop.svc.cluster.local', destination_service_name: 'api', destination_service_namespace: 'shop',
    request_protocol: 'http', response_code: '201', grpc_response_status: '', response_flags: '-', connection_security_policy: 'unknown',
  };
  expect(await series(metrics, 'istio_requests_total')).toEqual([{ labels, value: 1 }]);
  expect(await series(metrics, 'istio_request_duration_milliseconds')).toEqual([{ labels, value: 40 }]);
  expect(await series(metrics, 'istio_request_bytes')).toEqual([{ labels, value: 500 }]);
  expect(await series(metrics, 'istio_response_bytes')).toEqual([{ labels, value: 1234 }]);
});

test('outbound, no route (NR): the destination is all unknown, never the authority the client sent', async () => {
  const { clock, metrics } = setup();
  const inner: HttpService = async () => ({ status: 404, headers: {}, body: null, trailers: () => undefined, proxyError: 'no-route' }) as ProxyResponse;
  await recordMetrics(metrics, 'outbound', clock)(inner)(request({ authority: 'evil-unique-123.example' }, clock));
  const [s] = await series(metrics, 'istio_requests_total');
  expect(s.labels).toMatchObject({
    destination_service: 'unknown', destination_service_name: 'unknown', destination_service_namespace: 'unknown',
    destination_workload: 'unknown', destination_principal: 'unknown', response_code: '404', response_flags: 'NR',
  });
  expect(JSON.stringify(s.labels)).not.toContain('evil');
});

test('inbound (reporter=destination): the caller from its verified identity and wren-peer; gRPC status from the trailers', async () => {
  const { clock, metrics } = setup();
  const resBody = new PassThrough();
  const inner: HttpService = async () => ({ status: 200, headers: { 'content-type': 'application/grpc' }, body: resBody, trailers: () => ({ 'grpc-status': '5' }) }) as ProxyResponse;
  const headers = { 'content-type': 'application/grpc', 'wren-peer': 'api-v2;shop;api;v2;web.shop' };
  const res = await recordMetrics(metrics, 'inbound', clock)(inner)(request({ headers, source: { address: '10.0.0.7', port: 5, identity: API } }, clock));
  res.body!.resume();
  resBody.end();
  await new Promise((r) => res.body!.once('end', r));
  expect((await series(metrics, 'istio_requests_total'))[0].labels).toEqual({
    reporter: 'destination',
    source_workload: 'api-v2', source_workload_namespace: 'shop', source_principal: API, source_app: 'api', source_version: 'v2',
    destination_workload: 'web-v1', destination_workload_namespace: 'shop', destination_principal: SELF, destination_app: 'web', destination_version: 'v1',
    destination_service: 'web.shop.svc.cluster.local', destination_service_name: 'web', destination_service_namespace: 'shop',
    request_protocol: 'grpc', response_code: '200', grpc_response_status: '5', response_flags: '-', connection_security_policy: 'mutual_tls',
  });
});

test('inbound: wren-peer is ignored from a plaintext caller, from a caller of another namespace, and when malformed', async () => {
  const inner: HttpService = async () => ({ status: 200, headers: {}, body: null, trailers: () => undefined }) as ProxyResponse;
  const cases: [string, { identity: string; plaintext: boolean; peer: string }][] = [
    ['plaintext', { identity: '', plaintext: true, peer: 'api-v2;shop;api;v2;web.shop' }],
    ['namespace not the certificate\'s', { identity: 'spiffe://cluster.local/ns/other/sa/x', plaintext: false, peer: 'api-v2;shop;api;v2;web.shop' }],
    ['bad charset', { identity: API, plaintext: false, peer: 'api v2;shop;api;v2;web.shop' }],
    ['too many fields', { identity: API, plaintext: false, peer: 'a;shop;api;v2;web.shop;x' }],
    ['too long', { identity: API, plaintext: false, peer: `${'a'.repeat(700)};shop;;;` }],
  ];
  for (const [what, c] of cases) {
    const { clock, metrics } = setup();
    const layer = recordMetrics(metrics, 'inbound', clock, c.plaintext ? () => 'none' : () => 'mutual_tls');
    await layer(inner)(request({ headers: { 'wren-peer': c.peer }, source: { address: '10.0.0.9', port: 5, identity: c.identity } }, clock));
    const [s] = await series(metrics, 'istio_requests_total');
    expect([what, s.labels.source_workload, s.labels.source_app, s.labels.destination_service]).toEqual([what, 'unknown', 'unknown', 'unknown']);
  }
});

test('a gRPC status that is not a status code is not a label value', async () => {
  const { clock, metrics } = setup();
  const inner: HttpService = async () => ({ status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': 'x'.repeat(40) }, body: null, trailers: () => undefined }) as ProxyResponse;
  await recordMetrics(metrics, 'outbound', clock)(inner)(request({ headers: { 'content-type': 'application/grpc' } }, clock));
  expect((await series(metrics, 'istio_requests_total'))[0].labels.grpc_response_status).toBe('unknown');
});

test('grpc_response_status is one of the 17 codes as a number is written, else unknown: an upstream cannot make a label value of each string of digits', async () => {
  const { clock, metrics } = setup();
  let sent = '';
  const inner: HttpService = async () => ({ status: 200, headers: { 'content-type': 'application/grpc' }, body: null, trailers: () => ({ 'grpc-status': sent }) }) as ProxyResponse;
  const svc = recordMetrics(metrics, 'outbound', clock)(inner);
  for (const v of ['0', '00', '5', '05', '016', '16', '17', '99', '123456789012']) {
    sent = v;
    await svc(request({ headers: { 'content-type': 'application/grpc' } }, clock));
  }
  const got = Object.fromEntries((await series(metrics, 'istio_requests_total')).map((x) => [x.labels.grpc_response_status, x.value]));
  // Envoy's getGrpcStatus: a number; past the last code (16) InvalidCode.
  expect(got).toEqual({ '0': 2, '5': 2, '16': 2, unknown: 3 });
});

test('an upstream answering ever other statuses cannot add series without end: past MAX_OUTCOMES_PER_PEER per peer, one overflow series, counted', async () => {
  const { clock, metrics } = setup();
  let status = 200;
  let grpc = '0';
  const inner: HttpService = async (req) => {
    req.route = route;
    req.endpoint = ep;
    return { status, headers: { 'content-type': 'application/grpc', 'grpc-status': grpc }, body: null, trailers: () => undefined } as ProxyResponse;
  };
  const svc = recordMetrics(metrics, 'outbound', clock)(inner);
  const over = 40;
  // A malicious endpoint: a new (status, grpc-status) pair on every response.
  for (let i = 0; i < MAX_OUTCOMES_PER_PEER + over; i++) {
    status = 200 + Math.floor(i / 17);
    grpc = String(i % 17);
    await svc(request({}, clock));
  }
  const s = await series(metrics, 'istio_requests_total');
  expect(s.length).toBe(MAX_OUTCOMES_PER_PEER + 1);
  expect(s.find((x) => x.labels.response_code === 'unknown')).toMatchObject({ value: over, labels: { request_protocol: 'http', grpc_response_status: '', response_flags: '-', destination_workload: 'api-v2' } });
  const limit = (await metrics.registry.getSingleMetricAsString('wren_limit_exceeded_total')).match(/direction="outbound",limit="request-series-per-peer"} (\d+)/);
  expect(Number(limit?.[1])).toBe(over);
  // The outcomes already counted keep their series; the bound is per label values, not per
  // endpoint object (a push makes new ones): an equal endpoint gets no fresh budget.
  status = 200;
  grpc = '0';
  await svc(request({}, clock));
  const pushed = { ...ep };
  const again: HttpService = async (req) => ((req.route = route), (req.endpoint = pushed), { status: 999, headers: {}, body: null, trailers: () => undefined }) as ProxyResponse;
  await recordMetrics(metrics, 'outbound', clock)(again)(request({}, clock));
  const after = await series(metrics, 'istio_requests_total');
  expect(after.length).toBe(MAX_OUTCOMES_PER_PEER + 1);
  expect(after.find((x) => x.labels.response_code === '200' && x.labels.grpc_response_status === '0')?.value).toBe(2);
  expect(after.find((x) => x.labels.response_code === 'unknown')?.value).toBe(over + 1);
  // Another peer has a budget of its own.
  const other: HttpService = async () => ({ status: 418, headers: {}, body: null, trailers: () => undefined }) as ProxyResponse;
  await recordMetrics(metrics, 'outbound', clock)(other)(request({}, clock));
  expect((await series(metrics, 'istio_requests_total')).find((x) => x.labels.response_code === '418')?.labels.destination_service).toBe('unknown');
});

test('label objects are built once per (peer, response shape) and reused', async () => {
  const local = new WorkloadLabels({ name: 'web-v1', namespace: 'shop', app: 'web', version: 'v1' }, () => SELF);
  const a = local.forOutbound(route, ep);
  expect(local.forOutbound(route, ep)).toBe(a);
  expect(a.labels('http', '200', '', '-')).toBe(a.labels('http', '200', '', '-'));
  expect(local.forInbound(API, 'api-v2;shop;api;v2;web.shop', true)).toBe(local.forInbound(API, 'api-v2;shop;api;v2;web.shop', true));
  // Keyed by identity and by header value apart: no header, and another caller with the same header, are other sets.
  expect(local.forInbound(API, undefined, true)).toBe(local.forInbound(API, undefined, true));
  expect(local.forInbound(API, undefined, true)).not.toBe(local.forInbound(API, 'api-v2;shop;api;v2;web.shop', true));
  expect(local.forInbound(SELF, 'api-v2;shop;api;v2;web.shop', true)).not.toBe(local.forInbound(API, 'api-v2;shop;api;v2;web.shop', true));
  expect(local.peerHeader(service)).toBe('web-v1;shop;web;v1;api.shop');
  expect(local.peerHeader(undefined)).toBe('web-v1;shop;web;v1;');
});

test('a mesh peer sending ever new wren-peer values cannot add series without end: past the cap per caller they are ignored and counted', async () => {
  const { clock, metrics } = setup();
  const inner: HttpService = async () => ({ status: 200, headers: {}, body: null, trailers: () => undefined }) as ProxyResponse;
  const svc = recordMetrics(metrics, 'inbound', clock)(inner);
  const n = MAX_PEER_VALUES_PER_CALLER + 50;
  // A compromised api pod (a valid certificate for ns/shop) claims a new version on every request.
  for (let i = 0; i < n; i++) await svc(request({ source: { address: '10.0.0.9', port: 1, identity: API }, headers: { 'wren-peer': `api-v2;shop;api;v${i};web.shop` } }, clock));
  const s = await series(metrics, 'istio_requests_total');
  expect(s.length).toBe(MAX_PEER_VALUES_PER_CALLER + 1);
  expect(s.find((x) => x.labels.source_version === 'unknown')).toMatchObject({ value: 50, labels: { source_principal: API, source_workload: 'unknown' } });
  const limit = (await metrics.registry.getSingleMetricAsString('wren_limit_exceeded_total')).match(/limit="peer-metadata-values"} (\d+)/);
  expect(Number(limit?.[1])).toBe(50);
  // The values already believed stay believed; another caller has a budget of its own.
  await svc(request({ source: { address: '10.0.0.9', port: 1, identity: API }, headers: { 'wren-peer': 'api-v2;shop;api;v0;web.shop' } }, clock));
  await svc(request({ source: { address: '10.0.0.8', port: 1, identity: 'spiffe://cluster.local/ns/shop/sa/cart' }, headers: { 'wren-peer': 'cart-v1;shop;cart;v1;web.shop' } }, clock));
  const after = await series(metrics, 'istio_requests_total');
  expect(after.find((x) => x.labels.source_version === 'v0')?.value).toBe(2);
  expect(after.find((x) => x.labels.source_workload === 'cart-v1')?.value).toBe(1);
});

test('response_flags is Envoy\'s, as in the access log: URX when the last of several endpoints still failed, DC when the client left mid-response', async () => {
  const { clock, metrics } = setup();
  const failing: HttpService = async (req) => {
    req.route = route;
    const st = attachState(req, {} as ClusterHandle);
    st.tried.add('10.0.0.7:8080').add('10.0.0.8:8080');
    return { status: 503, headers: {}, body: null, trailers: () => undefined } as ProxyResponse;
  };
  await recordMetrics(metrics, 'outbound', clock)(failing)(request({}, clock));
  const ac = new AbortController();
  const body = new PassThrough();
  const res = await recordMetrics(metrics, 'outbound', clock)(async (req) => ((req.route = route), { status: 200, headers: {}, body, trailers: () => undefined }) as ProxyResponse)(request({ signal: ac.signal }, clock));
  ac.abort();
  res.body!.destroy();
  await new Promise((r) => setImmediate(r));
  const flags = (await series(metrics, 'istio_requests_total')).map((x) => [x.labels.response_code, x.labels.response_flags]);
  expect(flags).toEqual([['503', 'URX'], ['200', 'DC']]);
});
