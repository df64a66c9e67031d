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
