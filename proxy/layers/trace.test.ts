import { Registry } from 'prom-client';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import type { Headers } from '../http/headers.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { TelemetrySource, NO_TELEMETRY_OVERRIDES } from '../telemetry/telemetry-settings.js';
import { MeshTracer } from '../tracing/mesh-tracer.js';
import { parseTracingConfig } from '../tracing/tracing-config.js';
import { traceRequests } from './trace.js';
import { attachState } from './request-state.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SID = '00f067aa0ba902b7';

/** A tracer without a collector (sampling and propagation only), on a seeded Random. */
function tracer(percent: number, seed = 7): MeshTracer {
  const settings = new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: percent } });
  return new MeshTracer({
    config: parseTracingConfig(undefined, 'tracing'), settings, random: seededRandom(seed), clock: new FakeClock(), logger: createLogger({ level: 'error', sink: () => undefined }),
    registry: new Registry(), selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me', appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' },
  });
}

function request(headers: Headers): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'web:80', path: '/', headers, body: null, trailers: () => undefined, origProto: 'HTTP/1.1',
    source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
  };
}

const OK: ProxyResponse = { status: 200, headers: {}, body: null, trailers: () => undefined };

/** A tracer sampling `percent` of new traces whose finished spans land in `spans` (no exporter process). */
function recordingTracer(percent: number): { t: MeshTracer; spans: ReadableSpan[] } {
  const spans: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export: (s, done) => { spans.push(...s); done({ code: ExportResultCode.SUCCESS }); },
    shutdown: () => Promise.resolve(),
  };
  const t = new MeshTracer({
    config: parseTracingConfig(undefined, 'tracing'), settings: new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: percent } }), random: seededRandom(1),
    clock: new FakeClock(), logger: createLogger({ level: 'error', sink: () => undefined }), registry: new Registry(), selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me',
    appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' }, exporter,
  });
  return { t, spans };
}

async function send(t: MeshTracer, headers: Headers, kind: 'client' | 'server' = 'client'): Promise<Headers> {
  let seen: Headers = {};
  const svc = traceRequests(t, kind, new FakeClock())(async (req) => {
    seen = { ...req.headers };
    return OK;
  });
  await svc(request(headers));
  return seen;
}

describe('trace layer: sampling and propagation (no collector)', () => {
  test('requests without context are sampled at the percent in force, by the injected Random', async () => {
    const decisions = async (seed: number) => {
      const t = tracer(30, seed);
      const out: boolean[] = [];
      for (let i = 0; i < 2000; i++) out.push((await send(t, {}))['traceparent'].toString().endsWith('-01'));
      return out;
    };
    const a = await decisions(42);
    const share = a.filter(Boolean).length / a.length;
    expect(share).toBeGreaterThan(0.26);
    expect(share).toBeLessThan(0.34);
    // Same seed, same decisions: the draw is the injected Random, nothing else.
    expect(await decisions(42)).toEqual(a);
  });

  test('0 % and 100 %', async () => {
    expect((await send(tracer(0), {}))['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect((await send(tracer(100), {}))['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  test('an upstream decision wins over the percent, both ways', async () => {
    const no = `00-${TID}-${SID}-00`;
    expect((await send(tracer(100), { traceparent: no }))['traceparent']).toBe(no);
    const yes = `00-${TID}-${SID}-01`;
    // Without a collector a sampled context passes on as it came.
    expect((await send(tracer(0), { traceparent: yes }))['traceparent']).toBe(yes);
    expect((await send(tracer(0), { b3: '1' }))['traceparent']).toMatch(/-01$/);
  });

  test('B3 ids with a deferred decision: decided here and made explicit downstream', async () => {
    const h = await send(tracer(0), { 'x-b3-traceid': TID, 'x-b3-spanid': SID });
    expect(h['x-b3-sampled']).toBe('0');
    expect(h['traceparent']).toBe(`00-${TID}-${SID}-00`);
  });

  test('a malformed traceparent is replaced, never thrown on', async () => {
    expect((await send(tracer(0), { traceparent: '00-nothex-zz-01' }))['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  test('a not-sampled context: a malformed traceparent beside it, or B3 headers that say otherwise, do not reach the app (W3C section 3.2)', async () => {
    const OTHER = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    // A valid B3 "no" beside a malformed traceparent: the traceparent says the B3 context.
    let h = await send(tracer(100), { traceparent: 'garbage', b3: `${TID}-${SID}-0` });
    expect([h['traceparent'], h['b3']]).toEqual([`00-${TID}-${SID}-00`, `${TID}-${SID}-0`]);
    // A decision without ids: the malformed traceparent is dropped.
    h = await send(tracer(100), { traceparent: 'garbage', b3: '0' });
    expect(h['traceparent']).toBeUndefined();
    // W3C wins, not sampled: the B3 headers that said sampled (another trace) now say its context.
    h = await send(tracer(100), { traceparent: `00-${TID}-${SID}-00`, b3: `${OTHER}-${SID}-1`, 'x-b3-traceid': OTHER, 'x-b3-spanid': SID, 'x-b3-sampled': '1' });
    expect([h['traceparent'], h['b3'], h['x-b3-traceid'], h['x-b3-sampled']]).toEqual([`00-${TID}-${SID}-00`, `${TID}-${SID}-0`, TID, '0']);
    // B3 only, consistent: passed on untouched, no traceparent added.
    h = await send(tracer(100), { 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '0' });
    expect([h['traceparent'], h['x-b3-sampled']]).toEqual([undefined, '0']);
  });

  test('a not-sampled context: B3 headers that agree with it pass on unchanged, x-b3-parentspanid included; only those that disagree are rewritten (B3 spec, Envoy)', async () => {
    const PID = '1111111111111111';
    const OTHER = 'aaaaaaaaaaaaaaaa';
    const tp = `00-${TID}-${SID}-00`;
    const multi = { 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '0', 'x-b3-parentspanid': PID };
    const agreeing: Headers[] = [
      { traceparent: tp, ...multi },
      { traceparent: tp, b3: `${TID}-${SID}-0` },
      { traceparent: tp, b3: `${TID}-${SID}-0-${PID}` },
      { traceparent: tp, b3: '0', 'x-b3-sampled': '0' },
      { traceparent: tp, b3: `${TID}-${SID}-0-${PID}`, ...multi },
      // A 64-bit B3 trace id is the W3C one with its upper half zero.
      { traceparent: `00-${'0'.repeat(16)}${TID.slice(16)}-${SID}-00`, ...multi, 'x-b3-traceid': TID.slice(16), b3: `${TID.slice(16)}-${SID}-0` },
    ];
    for (const h of agreeing) expect(await send(tracer(100), { ...h })).toEqual(h);
    // x-b3-sampled disagrees, same span: only the decision is rewritten, the parent stays with its span.
    expect(await send(tracer(100), { traceparent: tp, ...multi, 'x-b3-sampled': '1' })).toEqual({ traceparent: tp, ...multi });
    // Another span: rewritten with the context's ids, and that span's parent goes with it.
    expect(await send(tracer(100), { traceparent: tp, ...multi, 'x-b3-spanid': OTHER })).toEqual({ traceparent: tp, 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '0' });
    // b3 disagrees, x-b3-* agree: only b3 is rewritten.
    expect(await send(tracer(100), { traceparent: tp, b3: `${TID}-${SID}-1`, ...multi })).toEqual({ traceparent: tp, b3: `${TID}-${SID}-0`, ...multi });
    // A malformed b3 beside the W3C context does not reach the app as it came.
    expect((await send(tracer(100), { traceparent: tp, b3: 'nonsense' }))['b3']).toBe(`${TID}-${SID}-0`);
    // B3 ids with the decision deferred, decided no here: the caller's span goes on, with its parent.
    expect(await send(tracer(0), { 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-parentspanid': PID })).toEqual({ traceparent: tp, ...multi });
  });

  test('a sampled context passed on without a collector: headers that disagree with it are rewritten, those that agree pass unchanged', async () => {
    const PID = '1111111111111111';
    const tp = `00-${TID}-${SID}-01`;
    const multi = { 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '1', 'x-b3-parentspanid': PID };
    const agreeing: Headers = { traceparent: tp, b3: `${TID}-${SID}-d-${PID}`, ...multi };
    expect(await send(tracer(0), { ...agreeing })).toEqual(agreeing);
    // Debug is sampled: x-b3-flags: 1 agrees, with or without x-b3-sampled.
    const debug: Headers = { traceparent: tp, 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-flags': '1' };
    expect(await send(tracer(0), { ...debug })).toEqual(debug);
    expect(await send(tracer(0), { ...debug, 'x-b3-sampled': '1' })).toEqual({ ...debug, 'x-b3-sampled': '1' });
    // x-b3-sampled saying no beside the W3C yes: a B3-only tracer in the app would drop the trace.
    expect(await send(tracer(0), { traceparent: tp, ...multi, 'x-b3-sampled': '0' })).toEqual({ traceparent: tp, ...multi });
    // A malformed traceparent beside a sampled B3 context does not reach the app (W3C section 3.2).
    expect(await send(tracer(0), { traceparent: 'garbage', b3: `${TID}-${SID}-1` })).toEqual({ traceparent: tp, b3: `${TID}-${SID}-1` });
  });

  test('an active health check between sidecars is not traced on the inbound side', async () => {
    expect((await send(tracer(100), { 'wren-health-check': '1' }, 'server'))['traceparent']).toBeUndefined();
  });
});

test('a token in the query string never reaches a span: url.full has its value redacted (OpenTelemetry HTTP conventions, url.full)', async () => {
  const { t, spans } = recordingTracer(100);
  await t.ready; // the SDK loads on first use (span-recorder.ts)
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
  await traceRequests(t, 'client', new FakeClock())(async () => OK)({ ...request({}), path: `/orders?id=7&access_token=${jwt}` });
  await t.shutdown();
  expect(spans).toHaveLength(1);
  expect(spans[0].attributes['url.full']).toBe('http://web:80/orders?id=7&access_token=REDACTED');
  expect(JSON.stringify(spans[0].attributes)).not.toContain('c2lnbmF0dXJl');
});

describe('tracestate belongs to the traceparent it came with (W3C Trace Context section 3.3)', () => {
  test('a new trace (no, or a malformed, traceparent) does not carry the request\'s tracestate on', async () => {
    for (const percent of [0, 100]) {
      const h = await send(tracer(percent), { traceparent: '00-nothex-zz-01', tracestate: 'evil=forged' });
      expect(h['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      expect(h['tracestate']).toBeUndefined();
      expect((await send(tracer(percent), { 'x-b3-sampled': '1', tracestate: 'evil=forged' }))['tracestate']).toBeUndefined();
    }
  });

  test('a tracestate past the list limits is not forwarded, as the layer says', async () => {
    const tooLong = Array.from({ length: 40 }, (_, i) => `k${i}=${'v'.repeat(250)}`).join(',');
    const h = await send(tracer(0), { traceparent: `00-${TID}-${SID}-01`, tracestate: tooLong });
    expect(h['traceparent']).toBe(`00-${TID}-${SID}-01`);
    expect(h['tracestate']).toBeUndefined();
    // A valid one continues with its traceparent.
    expect((await send(tracer(0), { traceparent: `00-${TID}-${SID}-01`, tracestate: 'a=1,b=2' }))['tracestate']).toBe('a=1,b=2');
  });

  test('the same limit holds inside a trace that is not sampled (the fast path that builds no context)', async () => {
    const tooLong = Array.from({ length: 40 }, (_, i) => `k${i}=${'v'.repeat(250)}`).join(',');
    const h = await send(tracer(0), { traceparent: `00-${TID}-${SID}-00`, tracestate: tooLong });
    expect(h['traceparent']).toBe(`00-${TID}-${SID}-00`);
    expect(h['tracestate']).toBeUndefined();
    // Two fields over the limit together (W3C section 3.3.1.1: they combine as one list).
    const half = tooLong.slice(0, 6000);
    expect((await send(tracer(0), { traceparent: `00-${TID}-${SID}-00`, tracestate: [half, half] }))['tracestate']).toBeUndefined();
    expect((await send(tracer(0), { traceparent: `00-${TID}-${SID}-00`, tracestate: 'a=1,b=2' }))['tracestate']).toBe('a=1,b=2');
  });

  test('a tracestate that is not a valid list (W3C section 3.3.1: 33 members, a duplicated key, a malformed member) is not forwarded; one too long is truncated (3.3.1.5)', async () => {
    const k = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=${i}`).join(',');
    const long = Array.from({ length: 31 }, (_, i) => `${'k'.repeat(250)}${String(i).padStart(6, '0')}=${'v'.repeat(256)}`);
    // Both paths: sampled (the context is built) and the not-sampled fast path.
    for (const flags of ['01', '00']) {
      const tp = `00-${TID}-${SID}-${flags}`;
      const fwd = async (tracestate: string | string[]) => (await send(tracer(0), { traceparent: tp, tracestate }))['tracestate'];
      expect([flags, await fwd(k(32))]).toEqual([flags, k(32)]);
      for (const bad of [k(33), [k(16), k(17)], 'a=1,a=2', 'a=1,Bad=2', 'a=1,b', 'a=1,b=x=y']) expect([flags, bad, await fwd(bad)]).toEqual([flags, bad, undefined]);
      const truncated = await fwd(long.join(','));
      expect([flags, truncated]).toEqual([flags, long.slice(0, 15).join(',')]);
    }
  });
});

test('a caller cannot make a queued span as big as its request head: attribute values and the span name are capped', async () => {
  const { t, spans } = recordingTracer(0);
  await t.ready; // the SDK loads on first use (span-recorder.ts)
  // The caller forces sampling (its decision is honoured) and sends a 60 kB path and authority.
  const big = 'a'.repeat(60_000);
  const headers = { traceparent: `00-${TID}-${SID}-01`, 'content-type': 'application/grpc' };
  await traceRequests(t, 'client', new FakeClock())(async () => OK)({ ...request(headers), path: `/${big}/M`, authority: `${big}:80` });
  await traceRequests(t, 'server', new FakeClock())(async () => OK)({ ...request({ traceparent: `00-${TID}-${SID}-01` }), path: `/${big}`, authority: big });
  await t.shutdown();
  expect(spans).toHaveLength(2);
  for (const s of spans) {
    expect(s.name.length).toBeLessThanOrEqual(1024);
    for (const v of Object.values(s.attributes)) if (typeof v === 'string') expect(v.length).toBeLessThanOrEqual(1024);
  }
});

test('userinfo in the authority (user:password@host) never reaches a span (OpenTelemetry url.full: MUST NOT contain credentials)', async () => {
  const { t, spans } = recordingTracer(100);
  await t.ready; // the SDK loads on first use (span-recorder.ts)
  for (const kind of ['client', 'server'] as const) await traceRequests(t, kind, new FakeClock())(async () => OK)({ ...request({}), authority: 'alice:s3cret@web:80' });
  await t.shutdown();
  expect(spans).toHaveLength(2);
  expect(spans[0].attributes['url.full']).toBe('http://REDACTED:REDACTED@web:80/');
  for (const s of spans) {
    expect(s.attributes['server.address']).toBe('web');
    expect(JSON.stringify(s.attributes)).not.toContain('s3cret');
  }
});

test('wren.response_flags is Envoy\'s, as the access log and the metric say: URX after failed attempts on several endpoints', async () => {
  const { t, spans } = recordingTracer(100);
  await t.ready; // the SDK loads on first use (span-recorder.ts)
  await traceRequests(t, 'client', new FakeClock())(async (req) => {
    attachState(req, {} as ClusterHandle).tried.add('10.0.0.1:80').add('10.0.0.2:80');
    return { ...OK, status: 503 };
  })(request({}));
  await t.shutdown();
  expect(spans[0].attributes['wren.response_flags']).toBe('URX');
});

test('after a retry, wren.destination.principal is the identity of the endpoint that answered (as wren.upstream.address), not the first attempt\'s', async () => {
  const { t, spans } = recordingTracer(100);
  await t.ready;
  const ep = (address: string, sa: string) => ({ address, port: 80, proxyPort: 15006, identity: `spiffe://cluster.local/ns/default/sa/${sa}`, weight: 1, zone: '', ready: true });
  await traceRequests(t, 'client', new FakeClock())(async (req) => {
    // The first attempt runs on the request itself (pick-endpoint sets req.endpoint); the retry on a copy, its endpoint on the state.
    const st = attachState(req, {} as ClusterHandle);
    req.endpoint = ep('10.0.0.1', 'dead');
    st.tried.add('10.0.0.1:80').add('10.0.0.2:80');
    st.endpoint = ep('10.0.0.2', 'alive');
    return OK;
  })(request({}));
  await t.shutdown();
  expect(spans[0].attributes['wren.upstream.address']).toBe('10.0.0.2:80');
  expect(spans[0].attributes['wren.destination.principal']).toBe('spiffe://cluster.local/ns/default/sa/alive');
});

test('a method the HTTP conventions do not know is _OTHER and the span is named HTTP: a client cannot mint one span name per invented method', async () => {
  const { t, spans } = recordingTracer(100);
  await t.ready;
  for (const method of ['XQZ1', 'GET', 'PATCH']) await traceRequests(t, 'server', new FakeClock())(async () => OK)({ ...request({}), method });
  await t.shutdown();
  expect(spans.map((s) => [s.name, s.attributes['http.request.method'], s.attributes['http.request.method_original']])).toEqual([
    ['HTTP', '_OTHER', 'XQZ1'], ['GET', 'GET', undefined], ['PATCH', 'PATCH', undefined],
  ]);
});
