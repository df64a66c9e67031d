import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { connect, type Server, type Socket } from 'node:net';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { bytesApp } from './helpers/bytes-app.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * What one request costs the data path, counted instead of timed (issue 12: the per-request
 * JS work of the layers). Promises, timers and next-tick callbacks created while N
 * keep-alive requests cross a real Wren pair in this process (outbound and inbound sidecar;
 * the client and the app write and parse bytes by hand, so they create none of these),
 * counted with async_hooks, divided by N. A layer that becomes an async function, or
 * wraps the response in a promise of its own, adds at least one promise per request and
 * fails the budget; so does a timer per request.
 *
 * Budgets (pair total per request; async_hooks also reports the promise V8 makes for each
 * `await` while hooks are on, so an async function with one await counts 2). Measured with
 * this test on the commit before issue 12's third session (5c5a41d) and after it:
 * - HTTP/1.1 through the pair (HTTP/1.1 between the sidecars on pooled connections, h1): 22.0 promises
 *   before, 12.0 after (outbound 7: the listener's then, record-metrics, errors-to-response,
 *   admission, retry, pick-endpoint, the HTTP/1.1 pool's; inbound 5: the listener's,
 *   record-metrics, errors-to-response, deliver-to-app, the pool's);
 * - HTTP/2 (h2c from the client, HTTP/2 between the sidecars and to the app): 24.0 before,
 *   13.0 after (the HTTP/2 listener continues the service with one then too); timers 4.0 before (a session idle timer re-armed per request on each
 *   listener, and node's stream idle timeout per served stream), 2.0 after (node's).
 * The budgets leave half a promise for background work of the proxies amortised over N.
 */
const PROMISES_H1 = 12.5;
const PROMISES_H2 = 13.5;
/** Background timers (the listeners' sweep, metrics) amortised over N: far below one per request. */
const TIMERS = 0.25;
/** HTTP/2: node's stream idle timeout (stream.setTimeout, streamIdleTimeoutMs) is a Timeout per served stream, one per sidecar. */
const TIMERS_H2 = 2.25;
/**
 * HTTP/1.1 next-tick callbacks per request, pair total: 14 before issue 12's lean2 work, 12
 * after (a settled response body that read() took whole is not also resume()d: its 'end'
 * is already scheduled, write-response.ts), 8 by 2026-12-05, 4 since a socket callback of
 * the proxy's, and the listener's hand-over of a response to its writer, run the steps they
 * deferred as they return (common/deferred.ts, enterTurn), 2 since the served socket's reads
 * go to the connection directly (net/direct-reads.ts: no maybeReadMore_ per read). The 2
 * left are the test's client and app sockets' maybeReadMore_: none is the pair's.
 */
const TICKS_H1 = 2.25;
/**
 * setImmediate callbacks per request: none on HTTP/1.1 between real connections (a quarter
 * for background work, as TIMERS); on the mesh multiplexer each session hands a turn's
 * frames to its TLS socket on one, at the turn's check phase (mux-session.ts: node's TLS
 * socket completes each write on a native immediate, so the turn's frames leave in one
 * write), once per direction per sidecar: 2.0 measured for HTTP/1.1. HTTP/2 over the
 * multiplexer: 5.0 measured, the rest node:http2's own in the test's client and app (the
 * HTTP/2 session between the sidecars, not counted here, makes 10).
 */
const IMMEDIATES_H1 = 0.25;
const IMMEDIATES_MUX = 2.25;
const IMMEDIATES_H2_MUX = 5.25;
/**
 * The same over the mesh multiplexer (protocol.meshHttp1 mux, the default): 2.0 measured,
 * the test's client's and app's (15.0 before the direct reads and writes below, 10.0 before
 * the socket callbacks ran their own deferred steps and the sockets' reads went to their
 * readers directly, TICKS_H1).
 * 21.0 while every response was answered by a WINDOW frame of its own (now the windows are
 * granted at half, as nghttp2 does); 17.0 while the virtual connection's reads went through
 * its Readable (a maybeReadMore_ per payload) and its writes through its Writable (an
 * afterWrite per write): now its reader gets payloads directly (setSink) and a write that
 * fits the windows leaves at once (mux-stream.ts). The bodies' deferred steps and the
 * session's look at what a callback wrote (many frames leave at its end; a few wait for the
 * turn's check phase, on an immediate: IMMEDIATES_MUX) ride on the callbacks' turns.
 * WREN_COST_SITES=1 prints where each tick is scheduled.
 */
const TICKS_MUX = 2.25;
/**
 * HTTP/2 next-tick callbacks per request, pair total (the test's own node:http2 client and
 * app included): 42 before grpc12, 38 after. The outbound's retry layer no longer wraps the
 * request body in a second Readable when nothing needs keeping (no `retryOn`, the default:
 * replayable-body.ts), whose push, end, destroy and resume cost four ticks. The rest are
 * node's per Http2Stream (the 'stream' emit, runInAsyncScope, maybeReadMore on a push,
 * endReadable, emitCloseNT, the writable side's finish; six streams per request).
 */
const TICKS_H2 = 38.25;
/**
 * HTTP/2 between the sidecars as HTTP/1.1 on the mesh multiplexer (protocol.meshHttp2 mux,
 * the default): 42 measured when it came, four more than on the HTTP/2 session then; 25 on
 * 2026-12-05, with the multiplexer's reads and writes direct and a turn's frames handed to
 * the socket on an immediate (IMMEDIATES_H2_MUX), where node:http2 flushes its frames from
 * the native side. What it saves is not ticks but the two
 * Http2Streams per call that scavenges cannot free (docs/benchmarks.md, "gRPC on the mesh
 * multiplexer"): 0.79x the CPU per call at saturation. 19 since the socket callbacks run
 * their own deferred steps and the TLS sockets' reads go to the multiplexer directly
 * (TICKS_H1); 15 since the frame-level HTTP/2 server and client sessions' reads and a served
 * stream's response do too. The rest are the test's node:http2 client's and app's.
 */
const TICKS_H2_MUX = 15.25;
/**
 * With the frame-level client to the app (protocol.appHttp2 frames, the default; 41
 * measured, on either transport between the sidecars): the inbound's response body is a
 * Readable of its own (its push, end and close ticks, as the Http2Stream's were); 34 on
 * 2026-12-05 (the multiplexer's hand-over of a turn's frames is an immediate), 31 since the
 * proxy's socket callbacks run their deferred steps without a tick (TICKS_H2_MUX). What it
 * saves is not ticks but the Http2Stream per call that scavenges cannot free (docs/benchmarks.md).
 */
const TICKS_H2_FRAMES = 31.25;
const N = 400;

const pki = testPki();
let app: Server, h2app: Http2Server, server: Proxy, client: Proxy, muxClient: Proxy, nodeServer: Proxy, nodeClient: Proxy;

/** An h2c app answering each stream, once its body has ended, with 5 bytes (node:http2's core API, no compatibility objects). */
function h2BytesApp(): Promise<Http2Server> {
  const s = createH2cServer();
  s.on('stream', (st) => {
    st.on('error', () => undefined);
    st.resume();
    st.once('end', () => {
      st.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
      st.end('hello');
    });
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

beforeAll(async () => {
  app = await bytesApp();
  h2app = await h2BytesApp();
  server = await startProxy({ pki, serviceAccount: 'web' });
  nodeServer = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { appHttp2: 'node' } } });
  const port = (app.address() as import('node:net').AddressInfo).port;
  const h2port = (h2app.address() as import('node:net').AddressInfo).port;
  const services = [meshService('web', 80, [{ appPort: port, proxy: server }]), meshService('h2', 81, [{ appPort: h2port, proxy: server }], { protocol: 'http2' })];
  // Each transport's budget is asserted on that transport, whatever the default.
  client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'h1', meshHttp2: 'h2' } }, services });
  muxClient = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux', meshHttp2: 'mux' } }, services });
  // node:http2 from and to the app (protocol.outboundHttp2 and appHttp2 node), on the HTTP/2 session between the sidecars: the budget before any of the changes.
  nodeClient = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2: 'h2', outboundHttp2: 'node' } }, services: [meshService('h2', 81, [{ appPort: h2port, proxy: nodeServer }], { protocol: 'http2' })] });
  countMetricCalls([client, muxClient, server, nodeServer, nodeClient]);
  countOnce();
});

afterAll(async () => {
  EventEmitter.prototype.once = originalOnce;
  await client.close();
  await muxClient.close();
  await nodeClient.close();
  await nodeServer.close();
  await server.close();
  await new Promise((r) => app.close(r));
  await new Promise((r) => h2app.close(r));
});

interface Counts {
  promises: number;
  timers: number;
  ticks: number;
  /** setImmediate callbacks: the mesh multiplexer hands a turn's frames to its socket on one (see IMMEDIATES_MUX). */
  immediates: number;
  /** Calls into prom-client's per-request metrics (each hashes and checks all of its labels): see METRIC_CALLS. */
  metricCalls: number;
  /** EventEmitter#once calls: see ONCE_H1. */
  once: number;
}

/**
 * The request metrics' calls into prom-client per request, pair total. Each
 * `inc(labels)` / `observe(labels, v)` hashes all 19 Istio labels into a string and checks
 * every label name: 6 calls per request per sidecar before issue 12's lean2 work (the
 * counter, three histograms, the in-flight gauge's inc and dec), 5-6 % of a sidecar's busy
 * samples at saturation. Now a label set's series adds to prom-client's cells directly
 * (proxy/metrics/request-series.ts) and the gauge is read when scraped: none per request.
 */
const METRIC_CALLS = 0;

/**
 * Listeners added with `once` per request, pair total: each costs node a bound wrapper
 * function and a state object, and a removeListener when it fires. 10 per HTTP/1.1
 * request before issue 12's lean2 work (the response body's 'end' and 'close' in
 * record-metrics on both sidecars, admission, pick-endpoint, the inbound's caller slot);
 * those fire at most once per stream with handlers that act once, so they are added with
 * `on`. The budget leaves room for the pools' rare connects amortised over N.
 */
const ONCE_H1 = 0.1;
/**
 * HTTP/2 (a POST with a body): 18 before, 15 after issue 12's lean2 work (the retry layer's
 * replayable request body listened to the client's body with once() closures), 3 after
 * grpc12's: the bodies are no longer pipe()d (three once() per pipe: the HTTP/2 response
 * writer on both sidecars and the HTTP/2 client call on both) but relayed with shared
 * listeners (proxy/http/h2-relay.ts). 2 since the inbound listener's stream accounting
 * became one shared 'close' handler: the 2 left are the test's own client ('close') and app ('end').
 */
const ONCE_H2 = 2.1;

/** Calls to the per-request metric methods of both proxies, counted while `on` (installed once, in beforeAll). */
const metricCalls = { on: false, n: 0, once: 0 };
const originalOnce = EventEmitter.prototype.once;
function countOnce(): void {
  EventEmitter.prototype.once = function (this: EventEmitter, ...a: Parameters<EventEmitter['once']>) {
    if (metricCalls.on) metricCalls.once++;
    return originalOnce.apply(this, a);
  };
}
function countMetricCalls(proxies: Proxy[]): void {
  for (const p of proxies) {
    const m = p.metrics;
    for (const [metric, method] of [[m.requests, 'inc'], [m.duration, 'observe'], [m.requestBytes, 'observe'], [m.responseBytes, 'observe'], [m.activeStreams, 'inc'], [m.activeStreams, 'dec']] as const) {
      const target = metric as unknown as Record<string, (...a: unknown[]) => unknown>;
      const orig = target[method].bind(metric);
      target[method] = (...a: unknown[]) => {
        if (metricCalls.on) metricCalls.n++;
        return orig(...a);
      };
    }
  }
}

/**
 * WREN_COST_SITES=1 prints where the ticks are scheduled (the first frames outside node's
 * task queue), to find the next one to remove; off by default (a stack per tick).
 */
const SITES = process.env['WREN_COST_SITES'] === '1';
const sites = new Map<string, number>();
const site = (): string =>
  (new Error().stack ?? '')
    .split('\n')
    .slice(3)
    .filter((l) => !l.includes('task_queues') && !l.includes('request-cost'))
    .slice(0, 3)
    .map((l) => l.trim().replace(/^at /, '').replace(/\(?file:\/\/\/[^)]*\/(dist|proxy)\//, '('))
    .join(' < ');

/** Runs `n` requests with `one(done)` (each starts when the previous one is done), counting what the process creates meanwhile. */
function counted(n: number, one: (done: () => void) => void): Promise<Counts> {
  const c: Counts = { promises: 0, timers: 0, ticks: 0, immediates: 0, metricCalls: 0, once: 0 };
  metricCalls.n = 0;
  metricCalls.once = 0;
  metricCalls.on = true;
  const hook = createHook({
    init(_id, type) {
      if (type === 'PROMISE') c.promises++;
      else if (type === 'Timeout') c.timers++;
      else if (type === 'Immediate') c.immediates++;
      else if (type === 'TickObject') {
        c.ticks++;
        if (SITES) sites.set(site(), (sites.get(site()) ?? 0) + 1);
      }
    },
  });
  return new Promise((resolve) => {
    let left = n;
    const next = (): void => {
      if (left-- === 0) {
        hook.disable();
        metricCalls.on = false;
        if (SITES) {
          console.log([...sites].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${(v / n).toFixed(2)} ${k}`).join('\n'));
          sites.clear();
        }
        // The promise this function returns is the one the hook saw last: not the pair's.
        resolve({ promises: (c.promises - 1) / n, timers: c.timers / n, ticks: c.ticks / n, immediates: c.immediates / n, metricCalls: metricCalls.n / n, once: metricCalls.once / n });
        return;
      }
      one(next);
    };
    hook.enable();
    next();
  });
}

/** GET / on one kept-alive connection to the outbound listener, bytes by hand: the next request when the 5-byte body is in. */
function h1Client(via: Proxy = client): { one: (done: () => void) => void; close: () => void } {
  const sock: Socket = connect(via.outboundPort, '127.0.0.1');
  let got = '';
  let done: (() => void) | null = null;
  sock.on('data', (d) => {
    got += d.toString('latin1');
    if (done !== null && got.includes('\r\n\r\n') && got.endsWith('hello')) {
      got = '';
      const d2 = done;
      done = null;
      d2();
    }
  });
  return {
    one: (d) => {
      done = d;
      sock.write('GET / HTTP/1.1\r\nhost: web\r\n\r\n');
    },
    close: () => sock.destroy(),
  };
}

/** A POST with a small body on one h2c session to the outbound listener. */
/** The HTTP/2 budget with `ticks` (and `immediates`, when given) for the transport measured. */
function expectH2Within(c: Counts, ticks: number, immediates?: number): void {
  if (immediates !== undefined) expect(c.immediates).toBeLessThanOrEqual(immediates);
  expect(c.promises).toBeLessThanOrEqual(PROMISES_H2);
  expect(c.timers).toBeLessThanOrEqual(TIMERS_H2);
  expect(c.ticks).toBeLessThanOrEqual(ticks);
  expect(c.once).toBeLessThanOrEqual(ONCE_H2);
  expect(c.metricCalls).toBe(METRIC_CALLS);
}

function h2Client(via: Proxy = client): { one: (done: () => void) => void; close: () => void } {
  const s: ClientHttp2Session = h2connect(`http://127.0.0.1:${via.outboundPort}`);
  return {
    one: (done) => {
      const st = s.request({ ':method': 'POST', ':path': '/echo', ':authority': 'h2:81', 'content-type': 'application/octet-stream' });
      st.on('data', () => undefined);
      st.once('close', done);
      st.end('ping');
    },
    close: () => s.close(),
  };
}

/**
 * Waits for a 100 ms window in which this process creates no timer: the hook counts whatever
 * the whole process creates, and jest runs other test files in this worker before this one. A
 * poll loop one of them left running (a raw-socket helper's, every 5 ms) added 0.5-1 timer and
 * 1-2 promises per request here, and failed CI; a window with nothing else scheduled keeps the
 * count to the pair's work. Fails, naming the creators, when no window is quiet within 10 s.
 */
async function quiet(): Promise<void> {
  const creators = new Map<string, number>();
  let timers = 0;
  const hook = createHook({
    init(_id, type) {
      if (type !== 'Timeout') return;
      timers++;
      const at = (new Error().stack ?? '').split('\n').slice(5, 8).map((l) => l.trim()).join(' < ');
      creators.set(at, (creators.get(at) ?? 0) + 1);
    },
  });
  hook.enable();
  try {
    for (let i = 0; i < 100; i++) {
      timers = 0;
      // The window's own timer is the one allowed.
      await new Promise((r) => setTimeout(r, 100));
      if (timers <= 1) return;
    }
  } finally {
    hook.disable();
  }
  throw new Error(`no quiet 100 ms in 10 s: something else in this jest worker keeps creating timers: ${[...creators].map(([k, v]) => `${v} ${k}`).join('; ')}`);
}

/** `client` is called after the quiet window: a connection left silent that long is detected as opaque TCP. */
async function measure(client: () => { one: (done: () => void) => void; close: () => void }): Promise<Counts> {
  await quiet();
  const c = client();
  // Warm: the pool's connections to the peer and to the app are open, the code is compiled.
  await counted(100, c.one);
  const counts = await counted(N, c.one);
  c.close();
  return counts;
}

test(`an HTTP/1.1 request through the pair costs at most ${PROMISES_H1} promises and no timer`, async () => {
  const c = await measure(() => h1Client());
  // Printed for the benchmark notes (docs/benchmarks.md): the budget is the bound, this the measurement.
  process.stdout.write(`request-cost h1: ${JSON.stringify(c)}\n`);
  expect(c.promises).toBeLessThanOrEqual(PROMISES_H1);
  expect(c.timers).toBeLessThanOrEqual(TIMERS);
  expect(c.ticks).toBeLessThanOrEqual(TICKS_H1);
  expect(c.immediates).toBeLessThanOrEqual(IMMEDIATES_H1);
  expect(c.once).toBeLessThanOrEqual(ONCE_H1);
  expect(c.metricCalls).toBe(METRIC_CALLS);
});

test(`an HTTP/1.1 request over the mesh multiplexer costs at most ${PROMISES_H1} promises, no timer and ${TICKS_MUX} ticks`, async () => {
  const c = await measure(() => h1Client(muxClient));
  process.stdout.write(`request-cost mux: ${JSON.stringify(c)}\n`);
  expect(c.promises).toBeLessThanOrEqual(PROMISES_H1);
  expect(c.timers).toBeLessThanOrEqual(TIMERS);
  expect(c.ticks).toBeLessThanOrEqual(TICKS_MUX);
  expect(c.immediates).toBeLessThanOrEqual(IMMEDIATES_MUX);
  expect(c.once).toBeLessThanOrEqual(ONCE_H1);
  expect(c.metricCalls).toBe(METRIC_CALLS);
});

test(`an HTTP/2 request over the mesh multiplexer costs at most ${PROMISES_H2} promises and ${TICKS_H2_MUX} ticks`, async () => {
  const c = await measure(() => h2Client(muxClient));
  process.stdout.write(`request-cost h2 mux: ${JSON.stringify(c)}\n`);
  expectH2Within(c, TICKS_H2_MUX, IMMEDIATES_H2_MUX);
});

test(`an HTTP/2 request through the pair and the frame-level client to the app costs at most ${PROMISES_H2} promises and ${TICKS_H2_FRAMES} ticks`, async () => {
  const c = await measure(() => h2Client());
  process.stdout.write(`request-cost h2 frames: ${JSON.stringify(c)}\n`);
  expectH2Within(c, TICKS_H2_FRAMES, IMMEDIATES_H2_MUX);
});

test(`an HTTP/2 request through the pair costs at most ${PROMISES_H2} promises and no timer`, async () => {
  const c = await measure(() => h2Client(nodeClient));
  process.stdout.write(`request-cost h2: ${JSON.stringify(c)}\n`);
  expectH2Within(c, TICKS_H2);
});
