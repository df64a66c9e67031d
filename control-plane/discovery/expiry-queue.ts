import type { Clock } from '../../common/clock.js';
import { WallDeadline } from '../../common/wall-deadline.js';

/**
 * Items due by the wall clock (discovery streams at their client certificate's notAfter),
 * kept in a binary min-heap by due time, with one WallDeadline for the earliest. Each
 * stream had a WallDeadline of its own (adv66), each looking at the wall clock at least once
 * a minute so that a host suspend is noticed: 10,000 streams woke the control plane ~167
 * times a second for nothing. Now the whole server wakes once a minute (and at each expiry):
 * the head is due first, so a look at it is a look at all of them (a suspend that jumped the
 * wall clock past many notAfters ends them all at that look). Adding and removing an item is O(log n), as in Go's time package and
 * libuv's timer heap.
 */
export class ExpiryQueue<T> {
  private readonly heap: { item: T; dueWallMs: number }[] = [];
  private readonly index = new Map<T, number>();
  private deadline: WallDeadline | null = null;
  /** The due time the deadline is armed for (Infinity: none). */
  private armedFor = Infinity;

  /** `onDue` is called once for each item whose time has come, after it left the queue. */
  constructor(
    private readonly clock: Clock,
    private readonly onDue: (item: T) => void,
  ) {}

  get size(): number {
    return this.heap.length;
  }

  /** Adds `item`, due at `dueWallMs` by the wall clock (an item already queued is moved). */
  add(item: T, dueWallMs: number): void {
    this.delete(item);
    this.heap.push({ item, dueWallMs });
    this.index.set(item, this.heap.length - 1);
    this.up(this.heap.length - 1);
    if (dueWallMs < this.armedFor) this.arm();
  }

  delete(item: T): void {
    const i = this.index.get(item);
    if (i === undefined) return;
    this.index.delete(item);
    const last = this.heap.pop()!;
    if (i < this.heap.length) {
      this.heap[i] = last;
      this.index.set(last.item, i);
      this.down(i);
      this.up(i);
    }
    // A deleted head leaves the deadline as it is: it fires early, finds nothing due, and is
    // armed again for the new head (churn of the earliest stream costs no timer). An empty
    // queue keeps none.
    if (this.heap.length === 0) this.disarm();
  }

  private disarm(): void {
    this.deadline?.cancel();
    this.deadline = null;
    this.armedFor = Infinity;
  }

  private arm(): void {
    this.deadline?.cancel();
    const head = this.heap[0];
    this.armedFor = head?.dueWallMs ?? Infinity;
    this.deadline = head ? new WallDeadline(this.clock, { dueWallMs: head.dueWallMs }, () => this.fire()) : null;
  }

  private fire(): void {
    this.deadline = null;
    this.armedFor = Infinity;
    const now = this.clock.wallNow();
    const due: T[] = [];
    while (this.heap.length > 0 && this.heap[0].dueWallMs <= now) {
      const { item } = this.heap[0];
      this.delete(item);
      due.push(item);
    }
    this.arm();
    for (const item of due) this.onDue(item);
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].dueWallMs <= h[i].dueWallMs) return;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l].dueWallMs < h[m].dueWallMs) m = l;
      if (r < h.length && h[r].dueWallMs < h[m].dueWallMs) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(a: number, b: number): void {
    const h = this.heap;
    [h[a], h[b]] = [h[b], h[a]];
    this.index.set(h[a].item, a);
    this.index.set(h[b].item, b);
  }
}
