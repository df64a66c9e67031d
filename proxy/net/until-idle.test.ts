import { FakeClock } from '../../common/clock.js';
import { untilIdle } from './until-idle.js';

/** The outbound half of the drain (proxy.ts quiesce), on fake time. */
const settled = async <T>(p: Promise<T>): Promise<T | 'pending'> => Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);

test('nothing in flight: resolves true at once, no timer left', async () => {
  const clock = new FakeClock();
  expect(await untilIdle(clock, () => 0, 10_000)).toBe(true);
  expect(clock.pending()).toBe(0);
});

test('in flight: resolves true within 50 ms of the count reaching 0, before the deadline', async () => {
  const clock = new FakeClock();
  let busy = 3;
  const p = untilIdle(clock, () => busy, 10_000);
  clock.advance(1000);
  expect(await settled(p)).toBe('pending');
  busy = 0;
  clock.advance(50);
  expect(await settled(p)).toBe(true);
  expect(clock.pending()).toBe(0);
});

test('still in flight at the deadline: resolves false then, not before', async () => {
  const clock = new FakeClock();
  const p = untilIdle(clock, () => 1, 1000);
  clock.advance(999);
  expect(await settled(p)).toBe('pending');
  clock.advance(1);
  expect(await settled(p)).toBe(false);
  expect(clock.pending()).toBe(0);
});
