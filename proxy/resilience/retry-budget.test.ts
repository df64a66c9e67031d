import { FakeClock } from '../../common/clock.js';
import { RetryBudget } from './retry-budget.js';

describe('RetryBudget (finagle / Linkerd: 20 % + 10/s over 10 s)', () => {
  const linkerd = { ratio: 0.2, minPerSecond: 10, ttlMs: 10_000 };

  it('allows the reserve (minPerSecond × ttl) with no traffic, then is exhausted', () => {
    const clock = new FakeClock(0);
    let exhausted = 0;
    const b = new RetryBudget(linkerd, clock, () => exhausted++);
    expect(b.balance()).toBe(100);
    for (let i = 0; i < 100; i++) expect(b.tryWithdraw()).toBe(true);
    expect(b.tryWithdraw()).toBe(false);
    expect(exhausted).toBe(1);
    expect(b.balance()).toBe(0);
  });

  it('each request deposits ratio of a retry: 5 requests buy one retry at 20 %', () => {
    const clock = new FakeClock(0);
    const b = new RetryBudget({ ratio: 0.2, minPerSecond: 0, ttlMs: 10_000 }, clock);
    expect(b.tryWithdraw()).toBe(false);
    for (let i = 0; i < 4; i++) b.deposit();
    expect(b.tryWithdraw()).toBe(false);
    b.deposit();
    expect(b.tryWithdraw()).toBe(true);
    expect(b.tryWithdraw()).toBe(false);
    for (let i = 0; i < 1000; i++) b.deposit();
    expect(b.balance()).toBe(200);
  });

  it('deposits and withdrawals expire after the ttl (refill)', () => {
    const clock = new FakeClock(0);
    const b = new RetryBudget(linkerd, clock);
    for (let i = 0; i < 100; i++) b.tryWithdraw();
    expect(b.tryWithdraw()).toBe(false);
    clock.advance(5_000);
    expect(b.tryWithdraw()).toBe(false); // withdrawals still inside the 10 s window
    clock.advance(5_000);
    expect(b.balance()).toBe(100); // the window slid past them: reserve is back
    for (let i = 0; i < 50; i++) b.deposit(); // +10 retries
    expect(b.balance()).toBe(110);
    clock.advance(10_000);
    expect(b.balance()).toBe(100); // deposits expired too
  });

  it('slides slot by slot', () => {
    const clock = new FakeClock(0);
    const b = new RetryBudget({ ratio: 0.5, minPerSecond: 0, ttlMs: 10_000 }, clock);
    b.deposit();
    b.deposit(); // 1 retry
    clock.advance(3_000);
    b.deposit();
    b.deposit(); // 2 retries
    expect(b.balance()).toBe(2);
    clock.advance(7_000); // first pair expires at 10 s
    expect(b.balance()).toBe(1);
    clock.advance(3_000);
    expect(b.balance()).toBe(0);
  });

  it('ratio 0 leaves only the per-second floor', () => {
    const clock = new FakeClock(0);
    const b = new RetryBudget({ ratio: 0, minPerSecond: 1, ttlMs: 10_000 }, clock);
    for (let i = 0; i < 100; i++) b.deposit();
    expect(b.balance()).toBe(10);
  });
});
