import { PassThrough, Readable, Writable } from 'node:stream';
import { accessLog } from './access-log.js';
import { AccessLog, DEFAULT_ACCESS_LOG_FLUSH, type AccessLogFlush } from '../access-log/access-log.js';
import { TelemetrySource, type TelemetryOverrides } from '../telemetry/telemetry-settings.js';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { Registry } from '../metrics/prom.js';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import { attachState } from './request-state.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';
import { parseService } from '../../contract/parse.js';

const settings = (enabled: boolean | undefined, samplingPercent?: number): TelemetryOverrides => ({ tracing: { samplingPercent: undefined }, accessLog: { enabled, samplingPercent } });

class Sink extends Writable {
  readonly lines: string[] = [];
  writes = 0;
  override _write(chunk: Buffer, _e: BufferEncoding, done: () => void): void {
    this.writes++;
    this.lines.push(...chunk.toString().split('\n').filter(Boolean));
    done();
  }
}

/** The logs set up so far: `parsed` writes what they buffer, as their flush interval's timer would (tested apart below, with the clock). */
const logs = new Set<AccessLog>();

function setup(o: { enabled?: boolean; sampling?: number; random?: () => number; sink?: Writable; max?: number; flush?: AccessLogFlush } = {}) {
  const clock = new FakeClock(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  const sink = o.sink ?? new Sink();
  const registry = new Registry();
  const log = new AccessLog({ telemetry: new TelemetrySource(settings(o.enabled ?? true, o.sampling)), random: o.random ?? seededRandom(1), clock, sink, registry, maxBufferedBytes: o.max, flush: o.flush });
  logs.add(log);
  return { clock, sink, registry, log };
}

function request(over: Partial<ProxyRequest> = {}): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'web.default.svc.cluster.local', path: '/a', headers: {}, body: null, trailers: () => undefined,
    origProto: 'HTTP/1.1', source: { address: '10.0.0.1', port: 5000, identity: '' }, signal: new AbortController().signal, startedAt: 0, ...over,
  } as ProxyRequest;
}

const ok = (res: Partial<ProxyResponse> = {}): HttpService => () => Promise.resolve({ status: 200, headers: {}, body: null, trailers: () => undefined, ...res });
/** Buffered lines are written at the latest one flush interval after the first (Envoy's file flush): write them now. */
const tick = () => new Promise((r) => setImmediate(r));
const parsed = async (s: Writable) => {
  await tick();
  for (const l of logs) l.flush('interval');
  await tick();
  return (s as Sink).lines.map((l) => JSON.parse(l) as Record<string, unknown>);
};
const flushes = async (registry: Registry) => (await registry.getSingleMetricAsString('wren_access_log_flushes_total')).split('\n').filter((l) => !l.startsWith('#')).join('\n');

test('off (the default): the request goes on untouched, the inner promise is returned as is, nothing is written', async () => {
  const { log, sink, clock } = setup({ enabled: false });
  const p = Promise.resolve({ status: 200, headers: {}, body: null, trailers: () => undefined } as ProxyResponse);
  let seen: ProxyRequest | undefined;
  const svc = accessLog(log, 'outbound')((r) => ((seen = r), p));
  const req = request({ startedAt: clock.now() });
  expect(svc(req)).toBe(p);
  expect(seen).toBe(req);
  expect(await parsed(sink)).toEqual([]);
});

test('a line per request: Istio keys, flags "-", times from the injected clock, the body bytes that passed', async () => {
  const { log, sink, clock } = setup();
  const body = new PassThrough();
  const inner: HttpService = async (r) => {
    for await (const _ of r.body!) clock.advance(0); // the upstream reads the request body
    clock.advance(7);
    return { status: 200, headers: {}, body, trailers: () => undefined };
  };
  const req = request({ startedAt: clock.now(), headers: { 'user-agent': 'ua', 'x-request-id': 'rid', 'x-forwarded-for': '1.2.3.4' }, body: Readable.from([Buffer.from('ab'), Buffer.from('c')]) });
  await accessLog(log, 'inbound', '127.0.0.1')(inner)({ ...req, targetPort: 8080 } as ProxyRequest);
  expect(await parsed(sink)).toEqual([]); // not before the response ends
  clock.advance(5);
  body.write('hel');
  body.end('lo');
  body.resume();
  await new Promise((r) => body.once('end', r));
  const [e] = (await parsed(sink));
  expect(e).toEqual({
    start_time: '2026-01-02T03:04:05.678Z', method: 'GET', path: '/a', protocol: 'HTTP/1.1', response_code: 200, response_flags: '-', response_code_details: 'via_upstream',
    connection_termination_details: null, bytes_received: 3, bytes_sent: 5, duration: 12, upstream_service_time: 7, x_forwarded_for: '1.2.3.4', user_agent: 'ua', request_id: 'rid',
    authority: 'web.default.svc.cluster.local', upstream_host: '127.0.0.1:8080', upstream_cluster: 'inbound|8080||', upstream_local_address: null, downstream_local_address: null,
    downstream_remote_address: '10.0.0.1:5000', requested_server_name: null, route_name: 'default', upstream_transport_failure_reason: null, trace_id: null,
    downstream_peer_identity: null, upstream_peer_identity: null, upstream_request_attempt_count: 1,
  });
});

test('counting the body bytes does not start a body flowing: a consumer that comes later still gets every byte', async () => {
  const { log, sink } = setup();
  const body = new PassThrough();
  body.end('early bytes');
  const res = await accessLog(log, 'outbound')(ok({ body }))(request());
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 10));
  expect(body.readableFlowing).toBeNull();
  const got: Buffer[] = [];
  res.body!.on('data', (c: Buffer) => got.push(c));
  await new Promise((r) => res.body!.once('end', r));
  expect(Buffer.concat(got).toString()).toBe('early bytes');
  expect((await parsed(sink))[0]).toMatchObject({ bytes_sent: 11 });
});

test('the flag of a synthetic error response comes from the one error table', async () => {
  const { log, sink } = setup();
  for (const code of ['NO_ROUTE', 'NO_ENDPOINTS', 'CONNECT_REFUSED', 'OVERFLOW', 'REQUEST_TIMEOUT', 'IDLE_TIMEOUT', 'FORBIDDEN', 'BAD_REQUEST', 'DRAINING'] as const) {
    const req = request();
    const res = await accessLog(log, 'outbound')(() => Promise.resolve(errorResponse(new ProxyError(code), req)))(req);
    // The line is written when the (synthetic) body has been sent.
    if (res.body) await new Promise((r) => res.body!.once('end', r).resume());
  }
  expect((await parsed(sink)).map((e) => e['response_flags'])).toEqual(['NR', 'UH', 'UF', 'UO', 'UT', 'SI', 'RBAC', 'DPE', 'LR']);
  expect((await parsed(sink))[6]['response_code_details']).toBe('rbac_access_denied_matched_policy[none]');
});

test('URX: a failure after attempts on more than one endpoint; a success after a retry has no flag', async () => {
  const { log, sink } = setup();
  const svc = parseService({ name: 'web', namespace: 'default', ports: [{ port: 80, endpoints: [] }] }, 't');
  const tried = (keys: string[]) => {
    const req = request({ route: { service: svc, port: svc.ports[0] } });
    const st = attachState(req, {} as ClusterHandle);
    keys.forEach((k) => st.tried.add(k));
    return req;
  };
  await accessLog(log, 'outbound')(ok({ status: 503 }))(tried(['a:1', 'b:1']));
  await accessLog(log, 'outbound')(ok({ status: 200 }))(tried(['a:1', 'b:1']));
  await accessLog(log, 'outbound')(ok({ status: 503 }))(tried(['a:1']));
  expect((await parsed(sink)).map((e) => [e['response_flags'], e['upstream_request_attempt_count'], e['upstream_cluster']])).toEqual([
    ['URX', 2, 'outbound|80||web.default.svc.cluster.local'],
    ['-', 2, 'outbound|80||web.default.svc.cluster.local'],
    ['-', 1, 'outbound|80||web.default.svc.cluster.local'],
  ]);
});

test('DC: the body closes before its end after the client went away', async () => {
  const { log, sink } = setup();
  const ac = new AbortController();
  const body = new PassThrough();
  await accessLog(log, 'outbound')(ok({ body }))(request({ signal: ac.signal }));
  ac.abort();
  body.destroy();
  await new Promise((r) => body.once('close', r));
  expect((await parsed(sink))[0]).toMatchObject({ response_code: 200, response_flags: 'DC', response_code_details: 'downstream_remote_disconnect' });
});

test('paths and client header values are capped; quotes and newlines cannot break the line', async () => {
  const { log, sink } = setup();
  await accessLog(log, 'outbound')(ok())(request({ path: '/' + 'p'.repeat(5000), headers: { 'user-agent': 'u"\n{"forged":1}' + 'x'.repeat(1000) } }));
  expect(await parsed(sink)).toHaveLength(1);
  const [e] = (await parsed(sink));
  expect((e['path'] as string).length).toBe(1024);
  expect((e['user_agent'] as string).length).toBe(256);
  expect(e['user_agent']).toMatch(/^u"\n\{"forged":1\}x+$/);
});

test('sampling: the injected random draw decides, once per request', async () => {
  const draws = [0.05, 0.5, 0.09, 0.95];
  const { log, sink } = setup({ sampling: 10, random: () => draws.shift()! });
  for (let i = 0; i < 4; i++) await accessLog(log, 'outbound')(ok())(request({ path: `/${i}` }));
  expect((await parsed(sink)).map((e) => e['path'])).toEqual(['/0', '/2']);
  const none = setup({ sampling: 0, random: () => 0 });
  await accessLog(none.log, 'outbound')(ok())(request());
  expect(await parsed(none.sink)).toEqual([]);
});

test('a sink that does not keep up: lines past the buffer cap are dropped and counted, memory stays bounded', async () => {
  // A stdout whose reader is stuck: nothing it is given is ever taken.
  const stuck = new Writable({ write: () => undefined, highWaterMark: 16 });
  const { log, registry } = setup({ sink: stuck, max: 4096 });
  for (let i = 0; i < 200; i++) await accessLog(log, 'outbound')(ok())(request());
  expect(stuck.writableLength).toBeLessThan(4096 + 2048);
  const dropped = (await registry.getSingleMetricAsString('wren_access_log_dropped_total')).match(/wren_access_log_dropped_total (\d+)/);
  expect(Number(dropped?.[1])).toBeGreaterThan(150);
});

test('lines are buffered and go out in one write the flush interval after the first (Envoy\'s file flush); start times keep their milliseconds', async () => {
  const { log, sink, clock, registry } = setup();
  for (const ms of [7, 42, 999]) await accessLog(log, 'outbound')(ok())(request({ startedAt: Date.UTC(2026, 0, 2, 3, 4, 5, ms), path: `/${ms}` }));
  await tick();
  // Event-loop turns pass, and all but a millisecond of the interval: nothing written yet, one timer armed for the batch.
  clock.advance(DEFAULT_ACCESS_LOG_FLUSH.intervalMs - 1);
  await tick();
  expect((sink as Sink).writes).toBe(0);
  expect(clock.pending()).toBe(1);
  clock.advance(1);
  await tick();
  const lines = (sink as Sink).lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.map((e) => e['start_time'])).toEqual(['2026-01-02T03:04:05.007Z', '2026-01-02T03:04:05.042Z', '2026-01-02T03:04:05.999Z']);
  expect((sink as Sink).writes).toBe(1);
  expect(clock.pending()).toBe(0); // no timer while nothing is buffered
  expect(await flushes(registry)).toBe('wren_access_log_flushes_total{reason="interval"} 1');
});

test('a buffer that reaches flush.minBytes is written at once; the interval\'s timer goes with it', async () => {
  const { log, sink, clock, registry } = setup({ flush: { intervalMs: 60_000, minBytes: 1500 } });
  const svc = accessLog(log, 'outbound')(ok());
  let n = 0;
  while ((sink as Sink).writes === 0 && n < 50) {
    await svc(request({ path: `/${n++}` }));
  }
  // A line is some 600 characters here: the third one passes 1500.
  expect(n).toBeGreaterThan(1);
  expect(n).toBeLessThan(10);
  expect((sink as Sink).lines).toHaveLength(n);
  expect(clock.pending()).toBe(0);
  expect(await flushes(registry)).toBe('wren_access_log_flushes_total{reason="size"} 1');
});

test('flush("shutdown") writes what is buffered (the proxy calls it when it stops); nothing buffered, nothing written', async () => {
  const { log, sink, registry, clock } = setup({ flush: { intervalMs: 60_000, minBytes: 1 << 20 } });
  await accessLog(log, 'outbound')(ok())(request({ path: '/last' }));
  log.flush('shutdown');
  expect((sink as Sink).lines.map((l) => JSON.parse(l)['path'])).toEqual(['/last']);
  log.flush('shutdown');
  expect((sink as Sink).writes).toBe(1);
  expect(clock.pending()).toBe(0);
  expect(await flushes(registry)).toBe('wren_access_log_flushes_total{reason="shutdown"} 1');
});

test('a token in the query string (?access_token=, RFC 6750 section 2.3) never reaches a line: its value is redacted, the rest of the path stays', async () => {
  const { log, sink } = setup();
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
  await accessLog(log, 'outbound')(ok())(request({ path: `/orders?id=7&access_token=${jwt}&x=1` }));
  await accessLog(log, 'outbound')(ok())(request({ path: `/s3?AWSAccessKeyId=AKIA1&Signature=secretsig&access%5Ftoken=${jwt}` }));
  const lines = await parsed(sink);
  expect(lines.map((e) => e['path'])).toEqual(['/orders?id=7&access_token=REDACTED&x=1', '/s3?AWSAccessKeyId=REDACTED&Signature=REDACTED&access%5Ftoken=REDACTED']);
  expect(JSON.stringify(lines)).not.toContain('c2lnbmF0dXJl');
});

test('userinfo in the authority (user:password@host) never reaches a line', async () => {
  const { log, sink } = setup();
  await accessLog(log, 'outbound')(ok())(request({ authority: 'alice:s3cret@web.default.svc.cluster.local' }));
  const [e] = await parsed(sink);
  expect(e['authority']).toBe('REDACTED:REDACTED@web.default.svc.cluster.local');
});
