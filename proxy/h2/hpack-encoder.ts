import { STATIC_LENGTH, STATIC_NAMES, STATIC_VALUES } from './hpack-static-table.js';

/** Header fields: flat [name, value, name, value, ...] (as node's rawHeaders), or a record. */
type HeaderFields = readonly string[] | Readonly<Record<string, string | readonly string[] | undefined>>;

interface StaticName {
  /** First static index with this name (section 2.3.1). */
  readonly index: number;
  /** Static indexes by value, for fields the static table holds whole. */
  readonly values: ReadonlyMap<string, number>;
  /** The longest of those values: a longer one is not looked up (a look-up hashes the whole string). */
  readonly maxValue: number;
}

const STATIC_BY_NAME: ReadonlyMap<string, StaticName> = (() => {
  const byName = new Map<string, { index: number; values: Map<string, number>; maxValue: number }>();
  for (let i = 1; i <= STATIC_LENGTH; i++) {
    let e = byName.get(STATIC_NAMES[i]);
    if (!e) byName.set(STATIC_NAMES[i], (e = { index: i, values: new Map(), maxValue: 0 }));
    if (!e.values.has(STATIC_VALUES[i])) e.values.set(STATIC_VALUES[i], i);
    e.maxValue = Math.max(e.maxValue, STATIC_VALUES[i].length);
  }
  return byName;
})();

type Latin1 = { latin1Write(s: string, offset: number, length: number): number };

/**
 * Names whose fields the encoder adds to the peer's dynamic table (section 6.2.1): values
 * that repeat from one message to the next on a connection and are no secret. Everything
 * else is a literal without indexing, as before: credentials and cookies (section 7.1.3:
 * a compressed secret beside attacker-chosen fields leaks), per-message values (request
 * ids, trace context, lengths, deadlines) that would only churn the table, and any name a
 * peer may have sent never-indexed (the proxy does not carry that bit across the hop, so
 * only names that are never secret are indexed).
 */
const INDEXED_NAMES: ReadonlySet<string> = new Set([
  ':authority', ':path', 'content-type', 'te', 'user-agent', 'accept', 'accept-encoding', 'accept-language',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-client-cert', 'grpc-accept-encoding', 'grpc-encoding',
  'grpc-status', 'server', 'date', 'cache-control', 'content-encoding', 'vary', 'via',
]);
/** What the encoder knows of a name: its static entry, and whether its fields go in the dynamic table. */
interface KnownName {
  readonly static: StaticName | undefined;
  readonly indexed: boolean;
}
/**
 * Every name of the static table or of INDEXED_NAMES, in one map: a field's name costs one
 * look-up before the dynamic table's own (a set and a map took two; the encoder's hash
 * look-ups were 1.2-1.4 % of a sidecar at gRPC saturation, docs/benchmarks.md). A name not
 * here is written as a literal, never indexed.
 */
const KNOWN_NAMES: ReadonlyMap<string, KnownName> = (() => {
  const m = new Map<string, KnownName>();
  for (const [name, st] of STATIC_BY_NAME) m.set(name, { static: st, indexed: INDEXED_NAMES.has(name) });
  for (const name of INDEXED_NAMES) if (!m.has(name)) m.set(name, { static: undefined, indexed: true });
  return m;
})();
/** Our table's largest size: the default SETTINGS_HEADER_TABLE_SIZE (RFC 9113 section 6.5.2), less if the peer says so. */
const TABLE_MAX = 4096;
/** An entry over this would push most of the table out: not indexed (nghttp2 keeps the same bound). */
const ENTRY_MAX = (TABLE_MAX * 3) / 4;
/** An entry's size: its octets and 32 (section 4.1); names and values are latin1, one octet a character. */
const entrySize = (name: string, value: string): number => name.length + value.length + 32;

/**
 * HPACK encoder (RFC 7541) for one direction of one HTTP/2 connection. A field the static
 * table holds whole is its index (section 6.1). Once the peer's SETTINGS are known
 * (setLimit()), fields of INDEXED_NAMES go into the peer's dynamic table the first time
 * (literal with incremental indexing, section 6.2.1) and are one index from then on: a
 * gRPC call's `content-type`, `te`, `user-agent`, `:authority` and `:path`, or a
 * response's `grpc-status: 0`, become an octet each instead of a literal string per
 * message (writing those literals, a call into node's latin1Write each, was most of the
 * encoder's cost at gRPC saturation: docs/benchmarks.md, "HPACK"). Every other field is a
 * literal without indexing (section 6.2.2) naming a static index when it can, with raw
 * (not Huffman) strings.
 *
 * Table size updates (section 4.2, 6.3): the first block starts with one to 0, and a
 * change of the limit signals the smallest size since the last block and then the new one
 * at the start of the next block, so a peer that lowers SETTINGS_HEADER_TABLE_SIZE (nghttp2
 * answers a block without the update with GOAWAY COMPRESSION_ERROR: hpack-nghttp2.test.ts)
 * always sees it. Until setLimit() is called the table stays at 0 and nothing is indexed.
 *
 * Names must already be lowercase (RFC 9113 section 8.2.1); the caller guarantees it, and
 * values must be latin1 (one octet per char), as node gives them.
 */
export class HpackEncoder {
  /** A size update is due at the start of the next block: `signalMin`, then `limit` if larger. */
  private signal = true;
  private signalMin = 0;
  /** The table's maximum size as the next block leaves it (0: no dynamic table). */
  private limit = 0;
  /** The entries, oldest first from `first`; `inserted` counts every one ever added (the newest's number). */
  private entries: { readonly name: string; readonly value: string; readonly n: number }[] = [];
  private first = 0;
  private inserted = 0;
  private size = 0;
  /** name → value → the entry's number, for the entries in the table. */
  private readonly byName = new Map<string, Map<string, number>>();
  /** Where block() encodes before copying out; grown to the largest block seen. */
  private scratch = Buffer.allocUnsafe(1024);

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE (its latest SETTINGS, 4096 if they did not name
   * it): the table may use up to this (never more than 4096); the change is signalled at
   * the start of the next block, and entries over a lower limit are evicted now.
   */
  setLimit(peerSetting: number): void {
    const want = Math.min(peerSetting, TABLE_MAX);
    if (want === this.limit) return;
    this.signalMin = this.signal ? Math.min(this.signalMin, want) : want;
    this.signal = true;
    this.limit = want;
    this.evictTo(want);
  }

  /**
   * The header block of these fields in a buffer of its own, for a frame. One pass, one
   * static-table look-up per field (encodedLength() then encode() make two): encoded into
   * a scratch buffer sized for the worst case, then copied out at its length.
   */
  block(fields: HeaderFields): Buffer {
    const max = maxLength(fields);
    if (this.scratch.length < max) this.scratch = Buffer.allocUnsafe(Math.max(max, 2 * this.scratch.length));
    const end = this.encode(fields, this.scratch, 0, max);
    const out = Buffer.allocUnsafe(end);
    this.scratch.copy(out, 0, 0, end);
    return out;
  }

  /** At least the octets encode() writes for these fields: what a buffer for them needs. */
  bound(fields: HeaderFields): number {
    return maxLength(fields);
  }

  /**
   * Octets encode() will write for these fields, now. Without a dynamic table only (before
   * setLimit()): with one, what a block takes depends on what it adds as it goes; size a
   * buffer with bound() then.
   */
  encodedLength(fields: HeaderFields): number {
    if (this.limit !== 0) throw new Error('hpack: encodedLength() with a dynamic table; use bound()');
    let n = this.signal ? 1 : 0;
    if (isFlat(fields)) {
      for (let i = 0; i + 1 < fields.length; i += 2) n += fieldLength(fields[i], fields[i + 1]);
      return n;
    }
    for (const name in fields) {
      const v = fields[name];
      if (v === undefined) continue;
      if (typeof v === 'string') n += fieldLength(name, v);
      else for (let i = 0; i < v.length; i++) n += fieldLength(name, v[i]);
    }
    return n;
  }

  /**
   * Writes the header block of these fields at out[offset..] and returns the offset after
   * it. Throws a RangeError, having changed no state, if out is too short: without a
   * dynamic table, shorter than encodedLength(fields) from offset; with one, than bound(fields).
   * A caller that has just computed bound(fields) passes it (`bound`), so it is not computed twice.
   */
  encode(fields: HeaderFields, out: Buffer, offset = 0, bound?: number): number {
    if (this.limit !== 0 && out.length - offset < (bound ?? maxLength(fields))) throw new RangeError('hpack: output buffer too small');
    let o = offset;
    if (this.signal) {
      // (Without a dynamic table the update is 0x20, one octet; with one, bound() counted it.)
      if (o >= out.length) throw new RangeError('hpack: output buffer too small');
      // Dynamic table size update (section 6.3): 001xxxxx.
      o = writeInteger(out, o, 0x20, 5, this.signalMin);
      if (this.limit !== this.signalMin) o = writeInteger(out, o, 0x20, 5, this.limit);
    }
    if (isFlat(fields)) {
      for (let i = 0; i + 1 < fields.length; i += 2) o = this.field(out, o, fields[i], fields[i + 1]);
    } else {
      for (const name in fields) {
        const v = fields[name];
        if (v === undefined) continue;
        if (typeof v === 'string') o = this.field(out, o, name, v);
        else for (let i = 0; i < v.length; i++) o = this.field(out, o, name, v[i]);
      }
    }
    this.signal = false;
    return o;
  }

  private field(out: Buffer, o: number, name: string, value: string): number {
    const known = KNOWN_NAMES.get(name);
    if (known === undefined) return writeLiteral(out, o, name, value);
    const s = known.static;
    if (this.limit === 0 || !known.indexed) return writeField(out, o, s, name, value);
    const whole = wholeIndex(s, value);
    if (whole !== undefined) return writeInteger(out, o, 0x80, 7, whole);
    const n = this.byName.get(name)?.get(value);
    // Indexed header field (section 6.1), a dynamic index: the newest entry is STATIC_LENGTH + 1 (section 2.3.3).
    if (n !== undefined) return writeInteger(out, o, 0x80, 7, STATIC_LENGTH + 1 + this.inserted - n);
    const size = entrySize(name, value);
    if (size > ENTRY_MAX || size > this.limit || (name === ':path' && value.includes('?'))) return writeField(out, o, s, name, value);
    // Literal with incremental indexing (section 6.2.1): 01xxxxxx, the name a static index or a literal.
    if (s !== undefined) o = writeInteger(out, o, 0x40, 6, s.index);
    else {
      out[o++] = 0x40;
      o = writeString(out, o, name);
    }
    o = writeString(out, o, value);
    this.add(name, value, size);
    return o;
  }

  /** Adds an entry (section 4.4): the oldest go first until it fits. */
  private add(name: string, value: string, size: number): void {
    this.evictTo(this.limit - size);
    const n = ++this.inserted;
    this.entries.push({ name, value, n });
    this.size += size;
    let values = this.byName.get(name);
    if (values === undefined) this.byName.set(name, (values = new Map()));
    values.set(value, n);
  }

  private evictTo(max: number): void {
    const es = this.entries;
    while (this.size > max && this.first < es.length) {
      const e = es[this.first++];
      this.size -= entrySize(e.name, e.value);
      const values = this.byName.get(e.name)!;
      if (values.get(e.value) === e.n) {
        values.delete(e.value);
        if (values.size === 0) this.byName.delete(e.name);
      }
    }
    if (this.first > 32 && this.first * 2 > es.length) {
      this.entries = es.slice(this.first);
      this.first = 0;
    }
  }
}

function isFlat(fields: HeaderFields): fields is readonly string[] {
  return Array.isArray(fields);
}

/**
 * At least the octets encode() writes: per field its name and value and 12 octets for
 * the representation's first octet and two length prefixes (a 7-bit-prefix integer takes
 * at most 5 octets for lengths under 2^28: section 5.1), plus the size update.
 */
function maxLength(fields: HeaderFields): number {
  // Two table size updates of at most 3 octets each (a size up to 4096, 5-bit prefix).
  let n = 6;
  if (isFlat(fields)) {
    for (let i = 0; i + 1 < fields.length; i += 2) n += fields[i].length + fields[i + 1].length + 12;
    return n;
  }
  for (const name in fields) {
    const v = fields[name];
    if (v === undefined) continue;
    if (typeof v === 'string') n += name.length + v.length + 12;
    else for (let i = 0; i < v.length; i++) n += name.length + v[i].length + 12;
  }
  return n;
}

/** The static index of the field (name, value) when the static table holds it whole. */
function wholeIndex(s: StaticName | undefined, value: string): number | undefined {
  return s !== undefined && value.length <= s.maxValue ? s.values.get(value) : undefined;
}

/** Octets of an integer with an N-bit prefix (section 5.1). */
function integerLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (let rest = value - max; rest >= 0x80; rest = Math.floor(rest / 0x80)) n++;
  return n;
}

function fieldLength(name: string, value: string): number {
  const s = STATIC_BY_NAME.get(name);
  if (s !== undefined) {
    const whole = wholeIndex(s, value);
    if (whole !== undefined) return integerLength(whole, 7);
    return integerLength(s.index, 4) + integerLength(value.length, 7) + value.length;
  }
  return 1 + integerLength(name.length, 7) + name.length + integerLength(value.length, 7) + value.length;
}

/** Writes an integer with an N-bit prefix after the flag bits `first` (section 5.1). */
function writeInteger(out: Buffer, o: number, first: number, prefixBits: number, value: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[o++] = first | value;
    return o;
  }
  out[o++] = first | max;
  let rest = value - max;
  while (rest >= 0x80) {
    out[o++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  out[o++] = rest;
  return o;
}

/**
 * Below this many characters a string is copied by a loop: node's latin1Write is a call
 * into C++ whose fixed cost (the buffer's backing store, a handle scope, the string's flat
 * view) is that of copying a few dozen characters here (it was two-thirds of the encoder's
 * samples in a profile of the inbound at gRPC saturation).
 */
const LOOP_COPY_MAX = 64;

/** Raw string literal, H = 0 (section 5.2). */
function writeString(out: Buffer, o: number, s: string): number {
  const n = s.length;
  o = writeInteger(out, o, 0x00, 7, n);
  if (n < LOOP_COPY_MAX) {
    for (let i = 0; i < n; i++) out[o + i] = s.charCodeAt(i);
  } else (out as unknown as Latin1).latin1Write(s, o, n);
  return o + n;
}

/** A field without indexing (section 6.2.2): its static index if the static table holds it whole, else a literal naming `s`'s index or the name. */
function writeField(out: Buffer, o: number, s: StaticName | undefined, name: string, value: string): number {
  if (s === undefined) return writeLiteral(out, o, name, value);
  const room = out.length - o;
  const whole = wholeIndex(s, value);
  if (whole !== undefined) {
    if (room < integerLength(whole, 7)) throw new RangeError('hpack: output buffer too small');
    // Indexed header field (section 6.1): 1xxxxxxx.
    return writeInteger(out, o, 0x80, 7, whole);
  }
  if (room < integerLength(s.index, 4) + integerLength(value.length, 7) + value.length) {
    throw new RangeError('hpack: output buffer too small');
  }
  // Literal without indexing, indexed name (section 6.2.2): 0000xxxx.
  o = writeInteger(out, o, 0x00, 4, s.index);
  return writeString(out, o, value);
}

/** Literal without indexing, new name (section 6.2.2): 0x00, name, value. */
function writeLiteral(out: Buffer, o: number, name: string, value: string): number {
  if (out.length - o < 1 + integerLength(name.length, 7) + name.length + integerLength(value.length, 7) + value.length) {
    throw new RangeError('hpack: output buffer too small');
  }
  out[o++] = 0x00;
  o = writeString(out, o, name);
  return writeString(out, o, value);
}
