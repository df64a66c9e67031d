import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ServingIdentity } from '../control-plane/identity/serving-identity.js';

/**
 * Found by the adversary review (duration-timer-overflow (control plane serving certificate)).
 *
 * What an operator does: `wren control-plane --cert-ttl 60d` (docs/identity.md allows up
 * to 90 days). The control plane's own serving certificate gets that lifetime too
 * (server.ts: ServingIdentity ttlMs = certTtlMs).
 *
 * What happens: ServingIdentity.schedule() arms Node's setTimeout for 65-75 % of the time
 * left, about 42 days = 3.6e9 ms, over 2^31-1 ms, which Node turns into 1 ms: the serving
 * certificate is re-issued, and the server's TLS credentials rebuilt, in a loop, about
 * every millisecond, for the life of the process (CPU, a new serial per tick, log lines
 * at debug). Anything over about 38 days does it.
 *
 * What should happen: one certificate, renewed at ~70 % of its life (the class's own
 * contract), or the timer clamped / the TTL refused with the flag named.
 */
test('a 60-day serving certificate is not re-issued in a loop', async () => {
  const issuer = generateIssuer('cluster.local');
  const s = new ServingIdentity({
    issuer, spiffeId: 'spiffe://cluster.local/ns/wren-system/sa/wren-control-plane', ttlMs: 60 * 24 * 3_600_000,
    clock: systemClock, random: seededRandom(1), logger: silentLogger,
  });
  s.start(); // as ControlPlane.start does
  try {
    const first = s.certificate.serial;
    const serials = new Set([first]);
    const end = Date.now() + 500;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
      serials.add(s.certificate.serial);
    }
    // Today: a new serial every few ms of free event loop (7 within half a second here).
    expect(serials.size).toBe(1);
  } finally {
    s.stop();
  }
});
