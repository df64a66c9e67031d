import { FakeClock } from '../../common/clock.js';
import { RetryBudget, RING_CELLS } from './retry-budget.js';

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

  it('two budgets on one ring (two listener workers) share the reserve and the deposits', () => {
    const clock = new FakeClock(0);
    const ring = { cells: new BigInt64Array(new SharedArrayBuffer(2 * RING_CELLS * 8)), base: RING_CELLS };
    const w0 = new RetryBudget(linkerd, clock, undefined, ring);
    const w1 = new RetryBudget(linkerd, clock, undefined, ring);
    for (let i = 0; i < 60; i++) expect(w0.tryWithdraw()).toBe(true);
    expect(w1.balance()).toBe(40);
    for (let i = 0; i < 40; i++) expect(w1.tryWithdraw()).toBe(true);
    expect(w0.tryWithdraw()).toBe(false);
    for (let i = 0; i < 5; i++) w1.deposit(); // five of w1's requests buy w0 a retry
    expect(w0.tryWithdraw()).toBe(true);
    expect(w1.tryWithdraw()).toBe(false);
    expect(ring.cells.subarray(0, RING_CELLS).every((c) => c === 0n)).toBe(true); // its own cells only
    clock.advance(10_000);
    expect(w0.balance()).toBe(100);
  });

  it("two threads whose clocks are a slot apart count each other's deposits and withdrawals", () => {
    const ahead = new FakeClock(5_000);
    const behind = new FakeClock(4_999);
    const ring = { cells: new BigInt64Array(RING_CELLS), base: 0 };
    const w0 = new RetryBudget({ ratio: 0.5, minPerSecond: 0, ttlMs: 10_000 }, ahead, undefined, ring);
    const w1 = new RetryBudget({ ratio: 0.5, minPerSecond: 0, ttlMs: 10_000 }, behind, undefined, ring);
    w0.deposit();
    w1.deposit();
    expect(w0.balance()).toBe(1);
    expect(w1.tryWithdraw()).toBe(true);
    expect(w0.balance()).toBe(0);
  });

  it('deposits into a cell a ring old start it afresh; later ones add in place, in the shared words', () => {
    const clock = new FakeClock(0);
    const ring = { cells: new BigInt64Array(new SharedArrayBuffer(RING_CELLS * 8)), base: 0 };
    const b = new RetryBudget({ ratio: 0.5, minPerSecond: 0, ttlMs: 10_000 }, clock, undefined, ring);
    for (let i = 0; i < 4; i++) b.deposit();
    expect(b.balance()).toBe(2);
    clock.advance(10_000); // slot 10: the same cell as slot 0, which must not be added to
    b.deposit();
    b.deposit();
    expect(b.balance()).toBe(1);
    // The cell is slot 10 (high word) and 2000 tokens (low word), as the 64-bit path writes it.
    expect(ring.cells[0]).toBe((10n << 32n) | 2000n);
    for (let i = 0; i < 6; i++) b.deposit();
    expect(ring.cells[0]).toBe((10n << 32n) | 8000n);
    expect(b.tryWithdraw()).toBe(true);
    expect(b.balance()).toBe(3);
  });
});
