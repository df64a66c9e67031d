import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { otlpReceiver, silentCollector, type OtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { NO_TELEMETRY_OVERRIDES } from '../proxy/telemetry/telemetry-settings.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Two sidecars (client → web) and a web app that forwards the trace headers on its own call
 * (through its sidecar's outbound) to an unmeshed `leaf` app, all exporting to an OTLP/gRPC
 * receiver: CLIENT(client) → SERVER(web) → [app] → CLIENT(web).
 */
const pki = testPki();
const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'];

type Reply = { status: number; body: string; headers: Record<string, string | string[] | undefined> };

function get(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The web app: /call forwards the trace headers it got to leaf /echo via its sidecar; /status/N answers N. */
async function forwardingApp(outboundPort: () => number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/status/')) {
      res.writeHead(Number(url.slice(8)));
      return void res.end('status');
    }
    const fwd: Record<string, string> = {};
    for (const h of TRACE_HEADERS) if (typeof req.headers[h] === 'string') fwd[h] = req.headers[h];
    get(outboundPort(), 'leaf', '/echo', fwd).then(
      (r) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ got: req.headers, leaf: JSON.parse(r.body).headers }));
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

const sampling = (p: Proxy, percent: number) => p.telemetry.applyPushed({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: percent } });

async function droppedCount(p: Proxy, reason: string): Promise<number> {
  const m = await p.metrics.registry.getSingleMetric('wren_trace_spans_dropped_total')?.get();
  return m?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('tracing across a sidecar pair', () => {
  let receiver: OtlpReceiver, leaf: FakeApp, web: { server: Server; port: number }, client: Proxy, server: Proxy;

  beforeAll(async () => {
    receiver = await otlpReceiver();
    leaf = await fakeApp('leaf');
    const tracing = { collector: { address: receiver.address, plaintext: true }, scheduledDelayMs: 20 };
    let webOutbound = 0;
    web = await forwardingApp(() => webOutbound);
    server = await startProxy({ pki, serviceAccount: 'web', config: { tracing, identity: { namespace: 'default', serviceAccount: 'web', trustDomain: pki.trustDomain, pod: 'web-0', labels: { app: 'web-app' } } }, services: [meshService('leaf', 80, [{ appPort: leaf.port, proxy: null }])] });
    webOutbound = server.outboundPort;
    client = await startProxy({ pki, serviceAccount: 'client', config: { tracing }, services: [meshService('web', 80, [{ appPort: web.port, proxy: server }])] });
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
    await leaf?.close();
    web?.server.close();
    await receiver?.close();
  });

  beforeEach(() => {
    receiver.spans.length = 0;
    sampling(client, 100);
    sampling(server, 100);
  });

  const ofTrace = (traceId: string) => (s: ReceivedSpan) => s.traceId === traceId;

  test('a request without context at 100 %: CLIENT → SERVER → CLIENT, parented across the hop, with HTTP semconv and wren attributes', async () => {
    const r = await get(client.outboundPort, 'web', '/call?x=1');
    expect(r.status).toBe(200);
    const { got, leaf: leafGot } = JSON.parse(r.body) as { got: Record<string, string>; leaf: Record<string, string> };
    const traceId = got.traceparent.split('-')[1];
    const spans = await receiver.waitFor(3, 10_000, ofTrace(traceId));
    const c = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'client')!;
    const sv = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    const c2 = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'web-app')!;
    expect(c.parentSpanId).toBe('');
    expect(sv.parentSpanId).toBe(c.spanId);
    expect(c2.parentSpanId).toBe(sv.spanId);
    // The app got the SERVER span as its parent; the leaf got the web sidecar's CLIENT span.
    expect(got.traceparent).toBe(`00-${traceId}-${sv.spanId}-01`);
    expect(leafGot.traceparent).toBe(`00-${traceId}-${c2.spanId}-01`);
    expect(c.name).toBe('GET');
    expect(c.attributes).toMatchObject({
      'http.request.method': 'GET', 'url.full': 'http://web/call?x=1', 'server.address': 'web', 'http.response.status_code': 200,
      'network.protocol.version': '1.1', 'wren.source.principal': client.tls.spiffeId, 'wren.destination.principal': server.tls.spiffeId,
      'wren.upstream.address': `127.0.0.1:${web.port}`, 'wren.attempts': 1, 'wren.response_flags': '-', 'wren.destination.service': 'web.default',
    });
    expect(sv.attributes).toMatchObject({
      'http.request.method': 'GET', 'url.path': '/call', 'url.scheme': 'http', 'http.response.status_code': 200,
      'wren.source.principal': client.tls.spiffeId, 'wren.destination.principal': server.tls.spiffeId, 'wren.upstream.address': `127.0.0.1:${web.port}`,
    });
    expect(c2.attributes).toMatchObject({ 'server.address': 'leaf', 'wren.upstream.address': `127.0.0.1:${leaf.port}` });
    expect(c.status.code).toBe('STATUS_CODE_UNSET');
    expect(sv.resource).toMatchObject({ 'service.name': 'web-app', 'k8s.namespace.name': 'default', 'k8s.pod.name': 'web-0' });
    expect(c.resource).toMatchObject({ 'service.name': 'client', 'k8s.namespace.name': 'default' });
  });

  test('W3C context is continued: same trace, the caller span as parent, tracestate kept', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const r = await get(client.outboundPort, 'web', '/call', { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tracestate: 'vendor=opaque' });
    expect(r.status).toBe(200);
    const spans = await receiver.waitFor(3, 10_000, ofTrace(traceId));
    const c = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'client')!;
    expect(c.parentSpanId).toBe('00f067aa0ba902b7');
    expect(c.traceState).toBe('vendor=opaque');
    expect(JSON.parse(r.body).got.tracestate).toBe('vendor=opaque');
  });

  test('B3 single header is continued and injected back in its own format', async () => {
    const r = await get(client.outboundPort, 'web', '/call', { b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1' });
    const got = JSON.parse(r.body).got as Record<string, string>;
    const spans = await receiver.waitFor(3, 10_000, ofTrace('80f198ee56343ba864fe8b2a57d3eff7'));
    const sv = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    const c = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'client')!;
    expect(c.parentSpanId).toBe('e457b5a2e4d86bd1');
    expect(got.b3).toBe(`80f198ee56343ba864fe8b2a57d3eff7-${sv.spanId}-1`);
    expect(got.traceparent).toBe(`00-80f198ee56343ba864fe8b2a57d3eff7-${sv.spanId}-01`);
  });

  test('B3 multi-header (64-bit trace id) is continued and injected back in its own format', async () => {
    const r = await get(client.outboundPort, 'web', '/call', { 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-sampled': '1' });
    const got = JSON.parse(r.body).got as Record<string, string>;
    const traceId = '0000000000000000a3ce929d0e0e4736';
    const spans = await receiver.waitFor(3, 10_000, ofTrace(traceId));
    const sv = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    expect(spans.find((s) => s.parentSpanId === '00f067aa0ba902b7')?.kind).toBe('SPAN_KIND_CLIENT');
    expect(got['x-b3-traceid']).toBe(traceId);
    expect(got['x-b3-spanid']).toBe(sv.spanId);
    expect(got['x-b3-sampled']).toBe('1');
  });

  test('B3 multi-header: each hop\'s request names its parent in x-b3-parentspanid, the span the new one is the child of (B3 spec, as Envoy and Zipkin inject it)', async () => {
    const traceId = '463ac35c9f6413ad48485a3953bb6124';
    const r = await get(client.outboundPort, 'web', '/call', { 'x-b3-traceid': traceId, 'x-b3-spanid': '0020000000000001', 'x-b3-parentspanid': '0010000000000001', 'x-b3-sampled': '1' });
    expect(r.status).toBe(200);
    const { got, leaf: leafGot } = JSON.parse(r.body) as { got: Record<string, string>; leaf: Record<string, string> };
    const spans = await receiver.waitFor(3, 10_000, ofTrace(traceId));
    const c = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'client')!;
    const sv = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    const c2 = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT' && s.resource['service.name'] === 'web-app')!;
    expect([c.parentSpanId, sv.parentSpanId, c2.parentSpanId]).toEqual(['0020000000000001', c.spanId, sv.spanId]);
    // The app gets the SERVER span, child of the client sidecar's CLIENT span; the leaf the web sidecar's CLIENT span, child of the SERVER span.
    expect(got).toMatchObject({ 'x-b3-traceid': traceId, 'x-b3-spanid': sv.spanId, 'x-b3-parentspanid': c.spanId, 'x-b3-sampled': '1' });
    expect(leafGot).toMatchObject({ 'x-b3-traceid': traceId, 'x-b3-spanid': c2.spanId, 'x-b3-parentspanid': sv.spanId, 'x-b3-sampled': '1' });
    expect(got.traceparent).toBe(`00-${traceId}-${sv.spanId}-01`);
  });

  test('B3 multi-header, not sampled: passed on unchanged to the leaf, the caller\'s x-b3-parentspanid included; no span', async () => {
    const traceId = '463ac35c9f6413ad48485a3953bb6125';
    const sent = { 'x-b3-traceid': traceId, 'x-b3-spanid': '0020000000000002', 'x-b3-parentspanid': '0010000000000002', 'x-b3-sampled': '0' };
    const r = await get(client.outboundPort, 'web', '/call', sent);
    const { got, leaf: leafGot } = JSON.parse(r.body) as { got: Record<string, string>; leaf: Record<string, string> };
    expect(got).toMatchObject(sent);
    expect(leafGot).toMatchObject(sent);
    expect(leafGot.traceparent).toBeUndefined();
    const after = await get(client.outboundPort, 'web', '/call');
    await receiver.waitFor(3, 10_000, ofTrace(JSON.parse(after.body).got.traceparent.split('-')[1]));
    expect(receiver.spans.filter(ofTrace(traceId))).toEqual([]);
  });

  test('W3C only: no B3 header appears on the way', async () => {
    const traceId = '463ac35c9f6413ad48485a3953bb6126';
    const r = await get(client.outboundPort, 'web', '/call', { traceparent: `00-${traceId}-0020000000000003-01` });
    const { got, leaf: leafGot } = JSON.parse(r.body) as { got: Record<string, string>; leaf: Record<string, string> };
    const spans = await receiver.waitFor(3, 10_000, ofTrace(traceId));
    const sv = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    expect(got.traceparent).toBe(`00-${traceId}-${sv.spanId}-01`);
    for (const h of TRACE_HEADERS.filter((n) => n !== 'traceparent')) {
      expect(got[h]).toBeUndefined();
      expect(leafGot[h]).toBeUndefined();
    }
  });

  test('sampled=0 is honoured by both sidecars and passed on unchanged, whatever the percent', async () => {
    const tp = '00-11111111111111111111111111111111-2222222222222222-00';
    const r = await get(client.outboundPort, 'web', '/call', { traceparent: tp });
    expect(JSON.parse(r.body).leaf.traceparent).toBe(tp);
    // A sampled request after it: once its spans are in, the unsampled one's would be too.
    const after = await get(client.outboundPort, 'web', '/call');
    await receiver.waitFor(3, 10_000, ofTrace(JSON.parse(after.body).got.traceparent.split('-')[1]));
    expect(receiver.spans.filter(ofTrace('11111111111111111111111111111111'))).toEqual([]);
  });

  test('samplingPercent 0: no span, and a not-sampled context is injected so the next hops agree', async () => {
    sampling(client, 0);
    const r = await get(client.outboundPort, 'web', '/call');
    const { got, leaf: leafGot } = JSON.parse(r.body) as { got: Record<string, string>; leaf: Record<string, string> };
    expect(got.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    // The web sidecar is at 100 % but honours the decision: the leaf sees the same context.
    expect(leafGot.traceparent).toBe(got.traceparent);
    sampling(client, 100);
    const after = await get(client.outboundPort, 'web', '/call');
    await receiver.waitFor(3, 10_000, ofTrace(JSON.parse(after.body).got.traceparent.split('-')[1]));
    expect(receiver.spans.filter(ofTrace(got.traceparent.split('-')[1]))).toEqual([]);
  });

  test('status: a 404 is an error on the CLIENT span only, a 500 on both', async () => {
    const r404 = await get(client.outboundPort, 'web', '/status/404', { traceparent: '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4-00f067aa0ba902b7-01' });
    const r500 = await get(client.outboundPort, 'web', '/status/500', { traceparent: '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa5-00f067aa0ba902b7-01' });
    expect([r404.status, r500.status]).toEqual([404, 500]);
    const s4 = await receiver.waitFor(2, 10_000, ofTrace('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4'));
    const s5 = await receiver.waitFor(2, 10_000, ofTrace('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa5'));
    const code = (ss: ReceivedSpan[], kind: string) => ss.find((s) => s.kind === kind)!;
    expect(code(s4, 'SPAN_KIND_CLIENT').status.code).toBe('STATUS_CODE_ERROR');
    expect(code(s4, 'SPAN_KIND_CLIENT').attributes['error.type']).toBe('404');
    expect(code(s4, 'SPAN_KIND_SERVER').status.code).toBe('STATUS_CODE_UNSET');
    expect(code(s5, 'SPAN_KIND_CLIENT').status.code).toBe('STATUS_CODE_ERROR');
    expect(code(s5, 'SPAN_KIND_SERVER').status.code).toBe('STATUS_CODE_ERROR');
  });

  test('a synthetic error response (no route) carries its response flag', async () => {
    const r = await get(client.outboundPort, 'nowhere', '/', { traceparent: '00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-00f067aa0ba902b7-01' });
    expect(r.status).toBe(404);
    const [s] = await receiver.waitFor(1, 10_000, ofTrace('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'));
    expect(s.attributes['wren.response_flags']).toBe('NR');
    expect(s.status.code).toBe('STATUS_CODE_ERROR');
  });
});

describe('a collector that is down or never answers', () => {
  let app: FakeApp;
  beforeAll(async () => {
    app = await fakeApp('web');
  });
  afterAll(async () => {
    await app.close();
  });

  async function pairExportingTo(address: string, extra: Record<string, unknown> = {}): Promise<{ client: Proxy; server: Proxy; close(): Promise<void> }> {
    const tracing = { collector: { address, plaintext: true }, scheduledDelayMs: 20, exportTimeoutMs: 300, shutdownTimeoutMs: 200, ...extra };
    const telemetry = { tracing: { samplingPercent: 100 } };
    const server = await startProxy({ pki, serviceAccount: 'web', config: { tracing, telemetry } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { tracing, telemetry }, services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])] });
    return { client, server, close: async () => { await client.close(); await server.close(); } };
  }

  async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test('down (closed port): every request succeeds, the lost spans are counted as export-failed', async () => {
    const closed = await silentCollector();
    const address = closed.address;
    await closed.close();
    const pair = await pairExportingTo(address);
    try {
      for (let i = 0; i < 10; i++) expect((await get(pair.client.outboundPort, 'web', '/name')).status).toBe(200);
      await until(async () => (await droppedCount(pair.client, 'export-failed')) + (await droppedCount(pair.client, 'export-timeout')) >= 10);
      await until(async () => (await droppedCount(pair.server, 'export-failed')) + (await droppedCount(pair.server, 'export-timeout')) >= 10);
    } finally {
      await pair.close();
    }
  });

  test('shutdown with a hung export: close takes at most the shutdown bound, the unsent spans are counted', async () => {
    const silent = await silentCollector();
    const pair = await pairExportingTo(silent.address, { exportTimeoutMs: 20_000, shutdownTimeoutMs: 300, scheduledDelayMs: 20 });
    try {
      for (let i = 0; i < 5; i++) expect((await get(pair.client.outboundPort, 'web', '/name')).status).toBe(200);
      // The first batch is on its way to a collector that never answers.
      await until(async () => silent.connections.count > 0);
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      await pair.client.close();
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await droppedCount(pair.client, 'shutdown')).toBe(5);
    } finally {
      await pair.close();
      await silent.close();
    }
  });

  test('never answers: requests do not wait for it, timed-out exports are counted, the queue bound drops the rest', async () => {
    const silent = await silentCollector();
    const pair = await pairExportingTo(silent.address, { maxQueueSize: 4, maxExportBatchSize: 2, exportTimeoutMs: 2000 });
    try {
      const started = Date.now();
      const replies = await Promise.all(Array.from({ length: 30 }, () => get(pair.client.outboundPort, 'web', '/name')));
      expect(replies.map((r) => r.status)).toEqual(Array(30).fill(200));
      // 30 requests well inside one export timeout: nobody waited for the collector.
      expect(Date.now() - started).toBeLessThan(2000);
      // At most 4 queued + 2 in flight per sidecar: the other 24 of its 30 spans were refused at once.
      await until(async () => (await droppedCount(pair.client, 'queue-full')) >= 24);
      expect(await droppedCount(pair.server, 'queue-full')).toBeGreaterThanOrEqual(24);
      await until(async () => (await droppedCount(pair.client, 'export-timeout')) >= 2, 10_000);
      expect(silent.connections.count).toBeGreaterThan(0);
    } finally {
      await pair.close();
      await silent.close();
    }
  });
});
