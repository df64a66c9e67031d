import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { CLOCK_SKEW_MS } from '../../certs/ca.js';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { WALL_CHECK_MS } from '../../common/wall-deadline.js';
import { generateIssuer } from './issuer.js';
import { ServingIdentity } from './serving-identity.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/wren-system/sa/wren-control-plane`;
const DAY = 24 * 3_600_000;
const issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));

/**
 * A FakeClock whose wall clock can jump ahead of its monotonic one: what a suspend (a laptop
 * running kind asleep, a VM paused or live-migrated) does, when CLOCK_MONOTONIC, which Node's
 * timers run on, stops and the wall clock is set right on resume.
 */
class SuspendableClock extends FakeClock {
  skipped = 0;
  override wallNow(): number {
    return super.wallNow() + this.skipped;
  }
}

describe('ServingIdentity renewal across a host suspend', () => {
  test('asleep longer than the time to the renewal (the monotonic clock stopped, the wall clock did not): renewed within a minute of waking, not hours later with an expired certificate', () => {
    const clock = new SuspendableClock(Date.now());
    const s = new ServingIdentity({ issuer, spiffeId: ID, ttlMs: DAY, clock, random: seededRandom(1), logger: silentLogger });
    s.start();
    const first = s.certificate.serial;
    // Asleep for a day and an hour: the certificate expired meanwhile by the wall clock; no timer moved.
    clock.skipped = DAY + 3_600_000;
    expect(s.certificate.notAfter.getTime()).toBeLessThan(clock.wallNow());
    clock.advance(WALL_CHECK_MS - 1);
    expect(s.certificate.serial).toBe(first);
    clock.advance(1);
    expect(s.certificate.serial).not.toBe(first);
    expect(s.certificate.notAfter.getTime()).toBeGreaterThan(clock.wallNow() + DAY - 60_000);
    // The next renewal is ~70 % of the new lifetime away, and still only one timer is armed.
    expect(clock.pending()).toBe(1);
    const second = s.certificate.serial;
    clock.advance(0.6 * DAY);
    expect(s.certificate.serial).toBe(second);
    clock.advance(0.2 * DAY);
    expect(s.certificate.serial).not.toBe(second);
    s.stop();
    expect(clock.pending()).toBe(0);
  });

  test('without a suspend it renews at 65-75 % of the lifetime by the monotonic clock, as before (a wall clock stepped back does not postpone it)', () => {
    const clock = new SuspendableClock(Date.now());
    const s = new ServingIdentity({ issuer, spiffeId: ID, ttlMs: DAY, clock, random: seededRandom(2), logger: silentLogger });
    s.start();
    const first = s.certificate.serial;
    clock.skipped = -3_600_000; // the wall clock set an hour back (an NTP step)
    clock.advance(0.64 * DAY);
    expect(s.certificate.serial).toBe(first);
    clock.advance(0.11 * DAY);
    expect(s.certificate.serial).not.toBe(first);
    s.stop();
  });
});

/**
 * A control plane whose clock runs ahead of the proxies' by more than the CA's backdating
 * (CLOCK_SKEW_MS): its own serving certificate, reissued at ~70 % of its life or at once for a
 * new issuer, starts after the proxies' now, and their TLS handshakes to it fail ("certificate
 * is not yet valid") until their clocks catch up: (skew - backdate) after every reissue. The
 * real TLS handshake below is judged by this machine's clock (the proxy's); the control plane's
 * injected clock runs 90 s ahead of it.
 */
test('a control plane 90 s ahead of the proxies: a proxy completes the TLS handshake to its freshly issued serving certificate', async () => {
  expect(CLOCK_SKEW_MS).toBeGreaterThanOrEqual(120_000); // istiod's 2 minutes (istio/istio#32176)
  const clock = new FakeClock(Date.now() + 90_000);
  const s = new ServingIdentity({ issuer, spiffeId: ID, ttlMs: DAY, clock, random: seededRandom(3), logger: silentLogger });
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', s.credentials, (e, p) => (e ? reject(e) : resolve(p))));
  try {
    const outcome = await new Promise<string>((resolve) => {
      // As a proxy verifies it: against the trust bundle (the SPIFFE ID is checked separately, proxy/identity/control-plane-credentials.ts).
      const sock = connect({ host: '127.0.0.1', port, ca: issuer.trustBundlePem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      sock.once('secureConnect', () => {
        resolve('handshake completed');
        sock.destroy();
      });
      sock.once('error', (e: NodeJS.ErrnoException) => resolve(`${e.code}: ${e.message}`));
    });
    expect(outcome).toBe('handshake completed');
  } finally {
    server.forceShutdown();
  }
});
