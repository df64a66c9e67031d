/**
 * The members of a long-lived owner that come and go one by one: a listener's open
 * connections, a server's served connections, its HTTP/2 sessions.
 *
 * Why not a Set: V8's Set is an OrderedHashTable, which rehashes into a new table once
 * deleted entries fill it; the table it replaced keeps a pointer to its successor (for
 * iterators) and the members it held. A Set that lives long is in the old generation, so
 * the first table of that chain is too, and for a scavenge every table after it, and every
 * member any of them held, is live, until a mark-compact. A listener whose Set saw
 * connections come and go had each closed connection (its socket, streams, parser, the
 * request it carried) promoted: 0.3-0.5 MB per scavenge under a connection-per-request
 * load, 10 MB more of old generation between mark-compacts (docs/benchmarks.md, "Issue
 * 12, 2026-12-06 twentieth session"; common/id-table.ts is the same finding for a
 * connection's streams). Here the members are entries of a doubly linked list: deleting
 * one relinks its neighbours and clears its own links and value, so nothing the owner
 * reaches keeps a member that left.
 */
export class LiveSet<T> {
  private head: Entry<T> | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `value`; the entry is what delete() takes. */
  add(value: T): LiveEntry {
    const e = new Entry<T>(value);
    const h = this.head;
    if (h !== null) {
      e.next = h;
      h.prev = e;
    }
    this.head = e;
    this.count++;
    return e;
  }

  /** Removes the entry's member; false when it was removed already (delete is idempotent). */
  delete(entry: LiveEntry): boolean {
    const e = entry as Entry<T>;
    if (!e.live) return false;
    e.live = false;
    if (e.prev !== null) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    e.prev = e.next = null;
    e.value = undefined;
    this.count--;
    return true;
  }

  /** The members now, newest first: a copy, so the caller may close (and so delete) any of them while it goes through it. */
  values(): T[] {
    const out: T[] = [];
    for (let e = this.head; e !== null; e = e.next) out.push(e.value as T);
    return out;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.values()[Symbol.iterator]();
  }

  /** Removes every member. */
  clear(): void {
    for (let e = this.head; e !== null; ) {
      const next = e.next;
      e.live = false;
      e.prev = e.next = null;
      e.value = undefined;
      e = next;
    }
    this.head = null;
    this.count = 0;
  }
}

/** A member's place in its LiveSet: what LiveSet.delete() takes. */
export interface LiveEntry {
  readonly live: boolean;
}

class Entry<T> implements LiveEntry {
  prev: Entry<T> | null = null;
  next: Entry<T> | null = null;
  live = true;

  constructor(public value: T | undefined) {}
}
