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
 * HPACK encoder (RFC 7541) for the requests of one HTTP/2 connection. It never adds to the
 * peer's dynamic table: each field is a static-table index (section 6.1) when the static
 * table holds it whole, else a literal without indexing (section 6.2.2) naming a static
 * index when it can, with raw (not Huffman) strings. So it keeps no per-field state, and
 * fields the peer sent never-indexed (section 6.2.3) stay out of any table as that section
 * requires of an intermediary. Since it never references the dynamic table, the peer's
 * SETTINGS_HEADER_TABLE_SIZE, whatever it is, does not change what it writes.
 *
 * One exception, once per connection: the first block starts with a dynamic table size
 * update to 0 (0x20, section 6.3). Section 4.2 says a change of the table's maximum size
 * MUST be signalled at the start of the next block, and a peer that lowers
 * SETTINGS_HEADER_TABLE_SIZE below the initial 4096 (RFC 9113 section 6.5.2) changes it:
 * nghttp2, hence node:http2, answers a block without the update with GOAWAY
 * COMPRESSION_ERROR (hpack-nghttp2.test.ts shows it for headerTableSize: 0). Setting our
 * table to 0 up front is valid for any setting, needs no wiring to the peer's SETTINGS and
 * wins the race with them: once it is 0, no later setting can be below it, so no further
 * update is ever due.
 *
 * Names must already be lowercase (RFC 9113 section 8.2.1); the caller guarantees it, and
 * values must be latin1 (one octet per char), as node gives them.
 */
export class HpackEncoder {
  private sizeUpdatePending = true;
  /** Where block() encodes before copying out; grown to the largest block seen. */
  private scratch = Buffer.allocUnsafe(1024);

  /**
   * The header block of these fields in a buffer of its own, for a frame. One pass, one
   * static-table look-up per field (encodedLength() then encode() make two): encoded into
   * a scratch buffer sized for the worst case, then copied out at its length.
   */
  block(fields: HeaderFields): Buffer {
    const max = maxLength(fields);
    if (this.scratch.length < max) this.scratch = Buffer.allocUnsafe(Math.max(max, 2 * this.scratch.length));
    const end = this.encode(fields, this.scratch, 0);
    const out = Buffer.allocUnsafe(end);
    this.scratch.copy(out, 0, 0, end);
    return out;
  }

  /** At least the octets encode() writes for these fields: what a buffer for them needs. */
  bound(fields: HeaderFields): number {
    return maxLength(fields);
  }

  /** Octets encode() will write for these fields, now. */
  encodedLength(fields: HeaderFields): number {
    let n = this.sizeUpdatePending ? 1 : 0;
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
   * it. Throws a RangeError, having changed no state, if out has fewer than
   * encodedLength(fields) octets from offset.
   */
  encode(fields: HeaderFields, out: Buffer, offset = 0): number {
    let o = offset;
    if (this.sizeUpdatePending) {
      if (o >= out.length) throw new RangeError('hpack: output buffer too small');
      out[o++] = 0x20;
    }
    if (isFlat(fields)) {
      for (let i = 0; i + 1 < fields.length; i += 2) o = writeField(out, o, fields[i], fields[i + 1]);
    } else {
      for (const name in fields) {
        const v = fields[name];
        if (v === undefined) continue;
        if (typeof v === 'string') o = writeField(out, o, name, v);
        else for (let i = 0; i < v.length; i++) o = writeField(out, o, name, v[i]);
      }
    }
    this.sizeUpdatePending = false;
    return o;
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
  let n = 1;
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
    const whole = value.length <= s.maxValue ? s.values.get(value) : undefined;
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

function writeField(out: Buffer, o: number, name: string, value: string): number {
  const room = out.length - o;
  const s = STATIC_BY_NAME.get(name);
  if (s !== undefined) {
    const whole = value.length <= s.maxValue ? s.values.get(value) : undefined;
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
  if (room < 1 + integerLength(name.length, 7) + name.length + integerLength(value.length, 7) + value.length) {
    throw new RangeError('hpack: output buffer too small');
  }
  // Literal without indexing, new name (section 6.2.2): 0x00, name, value.
  out[o++] = 0x00;
  o = writeString(out, o, name);
  return writeString(out, o, value);
}
