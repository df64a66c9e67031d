import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { otlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';
import { testServerCert } from './helpers/test-ca.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The collector is TLS unless `plaintext: true` (docs/observability.md, Turning it on):
 * verified by `tls.caFile`. A collector whose certificate that CA did not sign gets no span,
 * and the sidecar keeps serving, counting the lost spans.
 */
const pki = testPki();
const collectorCert = testServerCert(['localhost']);
const otherCa = testServerCert(['localhost']).ca;
let app: FakeApp, receiver: OtlpReceiver, dir: string;

beforeAll(async () => {
  app = await fakeApp('web');
  receiver = await otlpReceiver(ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(collectorCert.cert), private_key: Buffer.from(collectorCert.key) }], false));
  dir = mkdtempSync(join(tmpdir(), 'wren-collector-tls-'));
  writeFileSync(join(dir, 'ca.pem'), collectorCert.ca);
  writeFileSync(join(dir, 'other-ca.pem'), otherCa);
});

afterAll(async () => {
  await receiver.close();
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const q = httpRequest({ host: '127.0.0.1', port, path: '/name', headers: { host: 'web' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    q.on('error', reject);
    q.end();
  });
}

async function counter(p: Proxy, name: string, reason?: string): Promise<number> {
  const m = await p.metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => reason === undefined || v.labels.reason === reason)?.value ?? 0;
}

async function withProxy(caFile: string, run: (p: Proxy) => Promise<void>): Promise<void> {
  const address = receiver.address.replace('127.0.0.1', 'localhost');
  const p = await startProxy({
    pki, serviceAccount: 'client',
    config: { tracing: { collector: { address, tls: { caFile } }, scheduledDelayMs: 20, exportTimeoutMs: 1000 }, telemetry: { tracing: { samplingPercent: 100 } } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: null }])],
  });
  try {
    await run(p);
  } finally {
    await p.close();
  }
}

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the collector\'s CA in tls.caFile: spans are delivered over TLS', async () => {
  await withProxy(join(dir, 'ca.pem'), async (p) => {
    expect(await get(p.outboundPort)).toBe(200);
    await receiver.waitFor(1);
    await until(async () => (await counter(p, 'wren_trace_spans_exported_total')) >= 1);
  });
});

test('a collector certificate another CA signed: no span reaches it, requests are served, the spans are counted as dropped', async () => {
  receiver.spans.length = 0;
  const before = receiver.exports.count;
  await withProxy(join(dir, 'other-ca.pem'), async (p) => {
    for (let i = 0; i < 3; i++) expect(await get(p.outboundPort)).toBe(200);
    await until(async () => (await counter(p, 'wren_trace_spans_dropped_total', 'export-failed')) + (await counter(p, 'wren_trace_spans_dropped_total', 'export-timeout')) >= 3);
    expect(await counter(p, 'wren_trace_spans_exported_total')).toBe(0);
  });
  expect(receiver.exports.count).toBe(before);
  expect(receiver.spans).toEqual([]);
});
