import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';
import { until } from './helpers/until.js';

/**
 * The app's shutdown and the sidecar's (docs/operations.md, Shutdown): with a classic
 * sidecar the kubelet sends SIGTERM to the app and to the proxy at once, and the app may
 * still call out while it shuts down (flushing a queue, deregistering). A real `wren proxy`
 * process, a real SIGTERM, then a new outbound request from the "app" after it: the
 * outbound must still serve it for shutdown.minDrainMs (Istio's terminationDrainDuration,
 * default 5 s), not refuse it because nothing happened to be in flight at the signal.
 */
const pki = testPki();
let dir: string, other: FakeApp;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-drain-min-'));
  other = await fakeApp('other');
});
afterAll(async () => {
  await other.close();
  await rm(dir, { recursive: true, force: true });
});

const otherService = () => ({ services: [{ name: 'other', namespace: 'default', ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: other.port }] }] }] });

function get(port: number, host: string, path: string): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    })
      .on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, error: e.code ?? e.message }))
      .end();
  });
}

/** Whether a TCP connection to `port` is accepted ('connected') or refused (its error code). */
function tcpConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Resolves when `text` has appeared in the process's output. */
function outputHas(lines: string[], onLine: Set<() => void>, text: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!lines.join('').includes(text)) return;
      onLine.delete(check);
      resolve();
    };
    onLine.add(check);
    check();
  });
}

async function start(name: string, config: Record<string, unknown>): Promise<{ p: ProxyProcess; out: string[]; seen: (text: string) => Promise<void> }> {
  const out: string[] = [];
  const onLine = new Set<() => void>();
  const p = await startProxyProcess(pki, dir, name, { mesh: otherService(), ...config }, [], (t) => {
    out.push(t);
    for (const f of [...onLine]) f();
  });
  return { p, out, seen: (text) => outputHas(out, onLine, text) };
}

test.each([1, 2])('concurrency %i, default settings, nothing in flight at SIGTERM: a new outbound request the app makes after the signal is served (the outbound keeps serving for the 5 s minimum drain), the inbound already refuses connections, readiness fails, and the process exits once the minimum drain is over', async (concurrency) => {
  const { p, out, seen } = await start(`min${concurrency}`, { concurrency, shutdown: { gracePeriodMs: 10_000 } });
  try {
    expect(await get(p.outboundPort, 'other', '/name')).toEqual({ status: 200 });
    const t0 = Date.now();
    p.kill('SIGTERM');
    await seen('"msg":"draining"');
    // The app, shutting down alongside, calls out after the proxy's signal: a fresh connection.
    expect(await get(p.outboundPort, 'other', '/name')).toEqual({ status: 200 });
    // The inbound stopped accepting at the signal (the kubelet takes the pod out of its
    // Services' endpoints; a peer that still connects is refused and tries another endpoint).
    // With workers the "draining" line is the main thread's, and each worker closes its
    // listener when the message reaches it: on a loaded machine a moment later.
    expect(await until(async () => (await tcpConnect(p.inboundPort)) === 'ECONNREFUSED', 2000)).toBe(true);
    const ready = await get(p.adminPort, 'localhost', '/ready');
    expect(ready.status).toBe(503);
    // 3 s after the signal: still serving the app.
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 3000 - Date.now())));
    expect(await get(p.outboundPort, 'other', '/name')).toEqual({ status: 200 });
    expect(await p.exited).toEqual({ code: 0, signal: null });
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(4900);
    expect(ms).toBeLessThan(8000);
    // It says so when it holds the exit (every worker with concurrency 2).
    expect(out.join('').match(/"msg":"minimum drain: outbound keeps serving the app"[^\n]*"minDrainMs":5000/g)?.length).toBe(concurrency);
  } finally {
    await p.close();
  }
}, 30_000); // two workers' start on a loaded machine, then the 5 s drain: 20 s ran out once

test('shutdown.minDrainMs 0 (the injector\'s choice for a native sidecar, whose app has exited before the signal): SIGTERM with nothing in flight exits at once', async () => {
  const { p } = await start('min0', { shutdown: { gracePeriodMs: 10_000, minDrainMs: 0 } });
  try {
    const t0 = Date.now();
    p.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    await p.close();
  }
}, 20_000);

test('a minimum drain longer than the grace period is refused at start, naming both fields', async () => {
  await expect(start('minbad', { shutdown: { gracePeriodMs: 2000, minDrainMs: 3000 } })).rejects.toThrow(/shutdown\.minDrainMs.*longer than shutdown\.gracePeriodMs/);
});

test('POST /drain (asked for from inside the pod, a Job\'s app once it is done) does not wait for the minimum drain', async () => {
  const { p } = await start('mindrain', { shutdown: { gracePeriodMs: 10_000, minDrainMs: 5000 } });
  try {
    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${p.adminPort}/drain`, { method: 'POST', headers: { 'wren-admin': '1' } });
    expect(res.status).toBe(202);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    await p.close();
  }
}, 20_000);
