import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { createCsr, generateKeyPair } from '../../certs/index.js';
import { FakeClock, seededRandom, type Timer } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { WALL_CHECK_MS } from '../../common/wall-deadline.js';
import { generateIssuer } from '../identity/issuer.js';
import { ControlPlaneMetrics } from '../metrics.js';
import { MeshStore } from '../store/mesh-store.js';
import { DiscoveryServer } from './discovery-server.js';

/**
 * The end of authenticated discovery streams at their client certificate's expiry, at scale.
 * Each stream had a deadline of its own that looked at the wall clock once a minute (so that
 * a host suspend is noticed): 10,000 streams woke the control plane ~167 times a second. Now
 * one deadline serves them all. The DiscoveryServer's clock is a FakeClock that counts the
 * timers armed on it and whose wall clock can jump (a suspend); the streams are grpc-js-shaped
 * calls presenting real certificates of the server's CA (the TLS side is
 * test/discovery-expiry-suspend.test.ts).
 */
class CountingClock extends FakeClock {
  armed = 0;
  skipped = 0;
  override wallNow(): number {
    return super.wallNow() + this.skipped;
  }
  override setTimeout(fn: () => void, ms: number): Timer {
    this.armed++;
    return super.setTimeout(fn, ms);
  }
}

const TD = 'cluster.local';
const HOUR = 3_600_000;
const STREAMS = 1_000;

class FakeCall extends EventEmitter {
  errors: { code: number; details: string }[] = [];
  constructor(private readonly cert: X509Certificate) {
    super();
    this.on('error', (e: { code: number; details: string }) => this.errors.push(e));
  }
  getPeer(): string {
    return 'ipv4:10.0.0.1:40000';
  }
  getAuthContext() {
    return { transportSecurityType: 'ssl', sslPeerCertificate: { raw: this.cert.raw, valid_to: this.cert.validTo, serialNumber: this.cert.serialNumber } };
  }
  write(): boolean {
    return true;
  }
  end(): void {}
}

test('1,000 authenticated streams: one timer for their expiries, not one each; each ends at its notAfter, and all whose certificates expired during a suspend within a minute of waking', () => {
  const clock = new CountingClock(Date.now());
  const issuer = generateIssuer(TD, new Date(clock.wallNow() - HOUR));
  const store = new MeshStore(clock, seededRandom(1));
  store.apply([], []);
  store.markReady();
  const metrics = new ControlPlaneMetrics({ processMetrics: false });
  const ds = new DiscoveryServer({ store, metrics, clock, logger: silentLogger, issuer, clientAuth: { trustDomain: TD, podsAuthoritative: false } });
  // Certificates of 1 to 5 hours, the streams presenting them in turn.
  const certs = [1, 2, 3, 4, 5].map((h) => {
    const id = `spiffe://${TD}/ns/shop/sa/web-${h}`;
    const leaf = issuer.ca.issue(createCsr(generateKeyPair().privateKeyPem, id), { identity: id, ttlMs: h * HOUR, now: new Date(clock.wallNow()) });
    return new X509Certificate(leaf.certPem);
  });
  const calls: FakeCall[] = [];
  const before = clock.armed;
  for (let i = 0; i < STREAMS; i++) {
    const call = new FakeCall(certs[i % certs.length]);
    calls.push(call);
    (ds.implementation.Stream as unknown as (call: FakeCall) => void)(call);
  }
  expect(ds.subscriberCount).toBe(STREAMS);
  const atOpen = clock.armed - before;
  // Ten minutes of nothing: one look at the wall clock a minute for the whole server.
  const idle = clock.armed;
  clock.advance(10 * WALL_CHECK_MS);
  const perTenMinutes = clock.armed - idle;
  expect(atOpen).toBeLessThanOrEqual(2);
  expect(perTenMinutes).toBeLessThanOrEqual(11);
  expect(calls.every((c) => c.errors.length === 0)).toBe(true);

  // No suspend: the streams of the hour-long certificate end at its notAfter (to the second), the others stay.
  clock.advance(certs[0].validToDate.getTime() - clock.wallNow() - 1);
  expect(calls.filter((c) => c.errors.length > 0)).toHaveLength(0);
  clock.advance(1);
  const ended = (c: FakeCall) => c.errors.length === 1 && c.errors[0].code === 16 && c.errors[0].details === 'the client certificate has expired';
  expect(calls.filter(ended)).toHaveLength(STREAMS / 5);
  expect(calls.filter((c, i) => (i % 5 === 0) !== ended(c))).toHaveLength(0);
  expect(ds.subscriberCount).toBe(STREAMS - STREAMS / 5);

  // Asleep for five hours: every other certificate expired by the wall clock; no timer moved.
  clock.skipped = 5 * HOUR;
  const asleep = clock.armed;
  clock.advance(WALL_CHECK_MS);
  expect(calls.filter(ended)).toHaveLength(STREAMS);
  expect(ds.subscriberCount).toBe(0);
  expect(clock.armed - asleep).toBeLessThanOrEqual(2);
  ds.closeAll();
});
