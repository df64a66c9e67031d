import { FakeClock, seededRandom, systemClock, type Clock } from '../common/clock.js';
import { createLogger, silentLogger } from '../common/logger.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { Proxy } from '../proxy/proxy.js';
import { scrape } from './helpers/admin-metric.js';
import { testPki } from './helpers/pki.js';

/**
 * A sidecar whose workload certificate has expired while renewal keeps failing cannot take
 * mTLS traffic (every peer refuses the certificate), so /ready (and the metrics port's
 * /healthz/ready, the injected readiness probe) answer 503 with the reason until a renewal
 * lands, and wren_proxy_ready says why (docs/identity.md, "When renewal keeps failing").
 *
 * Real certificates from a real CA through the real Certify flow of WorkloadIdentity; the
 * wall time both it and the proxy judge validity by is a FakeClock's (the proxy's timers stay real).
 */
const TTL_MS = 3_600_000;
const pki = testPki();
const ID = `spiffe://${pki.trustDomain}/ns/default/sa/web`;
const wall = new FakeClock(Date.now());
let failing = false;
let wi: WorkloadIdentity;
let proxy: Proxy;

beforeAll(async () => {
  wi = new WorkloadIdentity({
    spiffeId: ID, clock: wall, random: seededRandom(7), logger: silentLogger,
    readToken: async () => Buffer.from('token'),
    certify: async (req) => {
      if (failing) throw Object.assign(new Error('14 UNAVAILABLE'), { code: 14, details: 'control plane unreachable' });
      const w = pki.ca.issue(req.csrPem, { identity: req.identity, ttlMs: TTL_MS, now: new Date(wall.wallNow()) });
      return { certChainPem: [w.certPem, ...w.chainPems].join(''), trustBundlePem: pki.bundlePem, validUntilMs: w.notAfter.getTime() };
    },
  });
  const tls = await wi.obtain(10_000);
  const config = parseProxyConfig({
    identity: { namespace: 'default', serviceAccount: 'web', trustDomain: pki.trustDomain },
    tls: { certFile: '(in memory)', keyFile: '(in memory)', trustBundleFile: '(in memory)' },
    listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
  }, 'test');
  const clock: Clock = { ...systemClock, wallNow: () => wall.wallNow() };
  proxy = await Proxy.start({ config, tls, clock, logger: createLogger({ sink: () => undefined }) });
  wi.attachMetrics(proxy.metrics.registry);
  wi.start();
});

afterAll(async () => {
  wi.stop();
  await proxy.close();
});

async function ready(): Promise<{ admin: [number, string]; probe: [number, string]; gauge: { reason: string; value: number }[] }> {
  const get = async (url: string): Promise<[number, string]> => {
    const r = await fetch(url);
    return [r.status, (await r.text()).trim()];
  };
  return {
    admin: await get(`http://127.0.0.1:${proxy.adminPort}/ready`),
    probe: await get(`http://127.0.0.1:${proxy.metricsPort}/healthz/ready`),
    gauge: (await scrape(proxy, 'wren_proxy_ready')).map((s) => ({ reason: s.labels.reason, value: s.value })),
  };
}

test('an expired certificate whose renewal keeps failing makes the sidecar not ready; the renewal that lands makes it ready again', async () => {
  expect(await ready()).toEqual({ admin: [200, 'ready'], probe: [200, 'ready'], gauge: [{ reason: 'ready', value: 1 }] });
  const first = wi.tls.leaf();
  const notAfter = first.validToDate.getTime();

  // The control plane goes away: every renewal fails, and the certificate runs out.
  failing = true;
  wall.advance(notAfter - wall.wallNow());
  await wi.settled();
  // notAfter itself is still valid (RFC 5280 §4.1.2.5, inclusive).
  expect((await ready()).admin[0]).toBe(200);
  wall.advance(1000);
  await wi.settled();
  expect(wi.counts.failure).toBeGreaterThan(0);
  expect(wi.tls.leaf().serialNumber).toBe(first.serialNumber);
  const reason = `workload certificate expired at ${new Date(notAfter).toISOString()} and no renewed one yet: mTLS peers refuse it`;
  expect(await ready()).toEqual({ admin: [503, reason], probe: [503, reason], gauge: [{ reason: 'certificate-expired', value: 0 }] });

  // The control plane is back: the next retry (at most 60 s later, docs/identity.md) renews.
  failing = false;
  wall.advance(60_000);
  await wi.settled();
  expect(wi.tls.leaf().serialNumber).not.toBe(first.serialNumber);
  expect(await ready()).toEqual({ admin: [200, 'ready'], probe: [200, 'ready'], gauge: [{ reason: 'ready', value: 1 }] });
});
