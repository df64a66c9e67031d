import { admissionMemory, CallerCounts, ListenerConnections, resetAdmissionColumn } from './shared-admission.js';

/** Two threads' views of one block (as two listener workers hold it: columns 0 and 1). */
const twoThreads = () => {
  const m = admissionMemory(2, true);
  return { m, callers: [new CallerCounts(m, 0), new CallerCounts(m, 1)] as const };
};

test('a listener holds `limit` connections over every column; a release frees a place; the listeners count apart', () => {
  const m = admissionMemory(2, false);
  const [w0, w1] = [new ListenerConnections(m, 'outbound', 0, 3), new ListenerConnections(m, 'outbound', 1, 3)];
  const inbound = new ListenerConnections(m, 'inbound', 1, 3);
  expect([w0.take(), w1.take(), w1.take(), w0.take(), w1.take()]).toEqual([true, true, true, false, false]);
  expect([inbound.take(), inbound.take(), inbound.take()]).toEqual([true, true, true]);
  w1.release();
  expect([w0.take(), w0.take()]).toEqual([true, false]);
  // A worker that exits takes its column with it: worker 1's one remaining connection is forgotten.
  resetAdmissionColumn(m, 1);
  expect([w1.take(), w1.take()]).toEqual([true, false]);
  expect(inbound.take()).toBe(true);
});

test('a caller holds `limit` requests over every column; another caller is not held by it; a reset column frees its share', () => {
  const { m, callers: [t0, t1] } = twoThreads();
  const greedy = t0.cellsOf('spiffe://cluster.local/ns/default/sa/greedy');
  expect(t1.cellsOf('spiffe://cluster.local/ns/default/sa/greedy')).toEqual(greedy);
  const other = t1.cellsOf('spiffe://cluster.local/ns/default/sa/other');
  expect([t0.take(greedy, 3), t1.take(greedy, 3), t1.take(greedy, 3)]).toEqual([true, true, true]);
  expect(t0.take(greedy, 3)).toBe(false);
  expect(t1.take(other, 3)).toBe(true);
  t1.release(greedy);
  expect([t0.take(greedy, 3), t0.take(greedy, 3)]).toEqual([true, false]);
  resetAdmissionColumn(m, 1);
  expect([t0.take(greedy, 3), t0.take(greedy, 3)]).toEqual([true, false]);
});

test('a caller sharing one of its two cells with a busy caller is not held by it', () => {
  const { callers: [t0] } = twoThreads();
  const busy = t0.cellsOf('busy');
  let oneShared: string | undefined;
  for (let i = 0; !oneShared && i < 1_000_000; i++) {
    const c = t0.cellsOf(`caller-${i}`);
    if ((c.a === busy.a || c.a === busy.b || c.b === busy.a || c.b === busy.b) && !(new Set([c.a, c.b, busy.a, busy.b]).size === 2)) oneShared = `caller-${i}`;
  }
  expect(oneShared).toBeDefined();
  for (let i = 0; i < 3; i++) expect(t0.take(busy, 3)).toBe(true);
  expect(t0.take(busy, 3)).toBe(false);
  // Its other cell is its own: the busy caller's three do not count against it.
  const c = t0.cellsOf(oneShared!);
  for (let i = 0; i < 3; i++) expect(t0.take(c, 3)).toBe(true);
  expect(t0.take(c, 3)).toBe(false);
});
