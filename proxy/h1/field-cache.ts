import { CR, HTAB, LF, SP } from './chars.js';

/** Sets of the cache (a power of two). */
const SETS = 256;
/** Two ways per set: lines whose bytes hash alike (one client's Host and another's x-forwarded-for did) both stay. */
const SLOTS = 2 * SETS;
/** A longer line is not kept: it would pin its strings and is unlikely to repeat byte for byte. */
const MAX_LINE = 512;
/**
 * Credentials are never kept, here nor in the serialiser's lines (serialize.ts): a hit skips work, so a line's time would say whether it had
 * been seen, and an early mismatch how much of it (the timing channel of a non-constant
 * compare). Other fields hold nothing an attacker learns more cheaply from the response.
 */
const CREDENTIAL_FIELDS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'];
/**
 * Fields whose value is new on every message: request ids and trace context (a new span id
 * per hop). Keeping one would only evict a line that repeats, and cost a store per message.
 */
const PER_MESSAGE_FIELDS = ['x-request-id', 'traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled'];
/** Names (lower case) whose lines neither this cache nor the serialiser's (serialize.ts) keeps: credentials, and values new on every message. */
export const NOT_KEPT_FIELDS: ReadonlySet<string> = new Set([...CREDENTIAL_FIELDS, ...PER_MESSAGE_FIELDS]);

/**
 * The field lines of recent heads, to take a repeated line's name and value without
 * checking its bytes against the grammar again or making its strings (the parser's
 * `latin1Slice` calls and its per-byte checks were most of a head's cost: docs/benchmarks.md,
 * "Field lines seen before"). Between the sidecars, and from one client, nearly every line
 * repeats byte for byte: `content-type: application/grpc`, `te: trailers`, the mesh's own.
 *
 * A hit is a line byte-identical to one that passed the parser's checks, except that the
 * letters of its name may differ in case: the same checks would pass it, with the same
 * name (lower case) and value, so the parser takes the kept strings. One cache per thread,
 * 256 sets of two, chosen by the line's length and a few of its bytes; a third line of a
 * set replaces the one not used last. The parser also remembers which slot each line of a
 * connection's last message was in, and tries that slot first (at()).
 */
export class FieldCache {
  private readonly names: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);
  private readonly values: string[] = new Array<string>(SLOTS).fill('');
  /** Whitespace bytes between the colon and the value. */
  private readonly ows = new Uint16Array(SLOTS);
  /** The whole line's length (name to the last byte before CRLF, trailing whitespace included). */
  private readonly lengths = new Uint16Array(SLOTS);
  /** The way of each set found or filled last: the other one is replaced. */
  private readonly recent = new Uint8Array(SETS);
  /** Slot of the last find() or at() that hit (name() and value() read it), or of the last keep() (-1: kept nothing). */
  private hit = 0;

  /** Whether b[s, e) (a field line without its CRLF, e > s) is a kept one; if so, name() and value() give it. */
  find(b: Buffer, s: number, e: number): boolean {
    const len = e - s;
    if (len > MAX_LINE) return false;
    const set = setOf(b, s, e);
    if (this.lengths[set] === len && this.same(set, b, s, e)) {
      this.recent[set] = 0;
      return true;
    }
    const other = set + SETS;
    if (this.lengths[other] === len && this.same(other, b, s, e)) {
      this.recent[set] = 1;
      return true;
    }
    return false;
  }

  /**
   * Whether the line kept in `slot` is at b[s] and ends there in CRLF before `end` (the
   * buffer's end): then it returns the index of that CR, and name() and value() give the
   * line; else -1. The parser's guess for a message's next line (the one in the same place
   * of the connection's previous message): a line found this way needs no scan for its LF.
   * The kept line holds no CR or LF (it passed the grammar), so its CRLF is the first LF
   * after s, where the scan would have found it.
   */
  at(slot: number, b: Buffer, s: number, end: number): number {
    const e = s + this.lengths[slot];
    if (e + 1 >= end || b[e] !== CR || b[e + 1] !== LF || !this.same(slot, b, s, e)) return -1;
    return e;
  }

  /** The slot the last find() or at() hit, or the last keep() filled (-1: it kept nothing). */
  get slot(): number {
    return this.hit;
  }

  private same(slot: number, b: Buffer, s: number, e: number): boolean {
    const name = this.names[slot];
    if (name === undefined) return false;
    const nl = name.length;
    for (let i = 0; i < nl; i++) {
      const c = b[s + i];
      const n = name.charCodeAt(i);
      // An upper-case letter matches its lower case; nothing else is folded (`^` | 0x20 is `~`).
      if (c !== n && !(c >= 0x41 && c <= 0x5a && (c | 0x20) === n)) return false;
    }
    let i = s + nl;
    if (b[i++] !== 0x3a /* : */) return false;
    for (const ws = i + this.ows[slot]; i < ws; i++) if (b[i] !== SP && b[i] !== HTAB) return false;
    const value = this.values[slot];
    for (let k = 0; k < value.length; k++, i++) if (b[i] !== value.charCodeAt(k)) return false;
    for (; i < e; i++) if (b[i] !== SP && b[i] !== HTAB) return false;
    this.hit = slot;
    return true;
  }

  name(): string {
    return this.names[this.hit]!;
  }

  value(): string {
    return this.values[this.hit];
  }

  /** Keeps a line the parser checked: b[s, e) parsed as `name` (lower case) and `value`, the value starting at `vs`. */
  keep(b: Buffer, s: number, e: number, vs: number, name: string, value: string): void {
    if (e - s > MAX_LINE || NOT_KEPT_FIELDS.has(name)) {
      this.hit = -1;
      return;
    }
    const set = setOf(b, s, e);
    // An empty way, else the one not used last.
    const way = this.names[set] === undefined ? 0 : this.names[set + SETS] === undefined ? 1 : 1 - this.recent[set];
    this.recent[set] = way;
    const slot = set + way * SETS;
    this.hit = slot;
    this.names[slot] = name;
    this.values[slot] = value;
    this.ows[slot] = vs - s - name.length - 1;
    this.lengths[slot] = e - s;
  }
}

/** The line's length, its first and last bytes and the one in its middle, mixed. */
function setOf(b: Buffer, s: number, e: number): number {
  const len = e - s;
  return (len * 31 + (b[s] | 0x20) * 7 + b[e - 1] * 3 + b[s + (len >> 1)]) & (SETS - 1);
}
