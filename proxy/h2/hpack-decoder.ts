import { HpackError } from './hpack-error.js';
import { huffmanDecode } from './hpack-huffman.js';
import { STATIC_LENGTH, STATIC_NAMES, STATIC_VALUES } from './hpack-static-table.js';

type Latin1 = { latin1Slice(start: number, end: number): string };
const latin1 = (b: Buffer, s: number, e: number): string => (b as unknown as Latin1).latin1Slice(s, e);

/** Entry overhead of RFC 7541 section 4.1 (dynamic table) and RFC 9113 section 6.5.2 (header list). */
const ENTRY_OVERHEAD = 32;
/**
 * Largest integer accepted (section 5.1: limits "in value or octet length" are the
 * implementation's). Nothing legitimate comes near: lengths are bounded by the block,
 * indexes by the tables, sizes by our SETTINGS_HEADER_TABLE_SIZE.
 */
const MAX_INTEGER = 0x7fffffff;
/** Continuation octets after the prefix: 5 carry 35 bits, more than MAX_INTEGER needs. */
const MAX_CONTINUATION_OCTETS = 5;
const TRUNCATED = -1;
const OVERFLOW = -2;

/**
 * HPACK decoder (RFC 7541) for one direction of one HTTP/2 connection: the peer's encoder
 * and this decoder share the dynamic table state, so blocks must be decoded in the order
 * they were sent, each whole (HEADERS plus its CONTINUATION frames, RFC 9113 section 4.3).
 *
 * After a COMPRESSION_ERROR the table may differ from the peer's: the connection must end,
 * and further decode() calls return 'decoder-failed'.
 *
 * maxHeaderListBytes (RFC 9113 section 6.5.2: sum of name + value + 32 per field): when a
 * block's list exceeds it, decode() still decodes the whole block, applying its table size
 * updates and incremental-indexing insertions so the table stays in sync with the peer,
 * drops the fields past the limit, and returns HEADER_LIST_TOO_LARGE at the end (carrying the
 * block's content-type, so the refusal can be in the caller's protocol: gRPC's trailers-only
 * RESOURCE_EXHAUSTED rather than a 431 that a gRPC client reads as UNKNOWN); the decoder
 * remains usable for the next block (only the stream fails).
 */
export class HpackDecoder {
  /** Current maximum size of the dynamic table, as last set by the peer (section 4.2). */
  private capacity: number;
  private size = 0;
  /** Ring of entries: newest at `newest`, older ones before it; grows by doubling. */
  private names: string[];
  private values: string[];
  /** Each entry takes at least 32 octets, so the ring never needs more slots than this. */
  private readonly maxSlots: number;
  private newest = 0;
  private count = 0;
  private pos = 0;
  private failed = false;
  private readonly maxHeaderListBytes: number;

  /**
   * @param maxTableSize the SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096): the most
   *   the peer may set the dynamic table to (section 6.3), and its size until it does.
   *   Assuming the most is safe even when the peer's encoder uses less without saying so
   *   (nghttp2 stays at 4096 if we advertise more): indexes count from the newest entry, so
   *   a larger table holds the same entries at the same indexes, plus some never referenced.
   */
  constructor(
    private readonly maxTableSize = 4096,
    options: { maxHeaderListBytes?: number } = {},
  ) {
    this.capacity = maxTableSize;
    this.maxHeaderListBytes = options.maxHeaderListBytes ?? Infinity;
    this.maxSlots = Math.max(1, Math.floor(maxTableSize / ENTRY_OVERHEAD));
    // Start small: a large advertised table (up to 2^32 - 1) costs memory only when used.
    const slots = Math.min(this.maxSlots, 16);
    this.names = new Array<string>(slots).fill('');
    this.values = new Array<string>(slots).fill('');
  }

  /** Size of the dynamic table (section 4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table as [name, value, ...], newest first (index 62 first). */
  tableEntries(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) {
      const at = (this.newest - i + this.names.length) % this.names.length;
      out.push(this.names[at], this.values[at]);
    }
    return out;
  }

  /** Decodes one complete header block to [name, value, name, value, ...] (as node's rawHeaders). */
  decode(block: Buffer): string[] | HpackError {
    if (this.failed) return new HpackError('decoder-failed');
    const out: string[] = [];
    const end = block.length;
    let listBytes = 0;
    let tooLarge = false;
    let contentType: string | undefined;
    let fieldSeen = false;
    this.pos = 0;
    while (this.pos < end) {
      const b = block[this.pos];
      let name: string | HpackError;
      let value: string | HpackError;
      if (b & 0x80) {
        // Indexed header field (section 6.1).
        const index = this.integer(block, 7);
        if (index < 0) return this.fail(index === TRUNCATED ? 'truncated' : 'integer-overflow');
        if (index === 0) return this.fail('index-zero');
        if (index <= STATIC_LENGTH) {
          name = STATIC_NAMES[index];
          value = STATIC_VALUES[index];
        } else {
          const d = index - STATIC_LENGTH - 1;
          if (d >= this.count) return this.fail('index-out-of-range');
          const at = (this.newest - d + this.names.length) % this.names.length;
          name = this.names[at];
          value = this.values[at];
        }
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (section 6.3): only before the block's first field
        // (section 4.2), and never above what we advertised.
        if (fieldSeen) return this.fail('table-size-update-not-first');
        const size = this.integer(block, 5);
        if (size < 0) return this.fail(size === TRUNCATED ? 'truncated' : 'integer-overflow');
        if (size > this.maxTableSize) return this.fail('table-size-too-large');
        this.capacity = size;
        this.evict(0);
        continue;
      } else {
        // Literal with incremental indexing (01, 6-bit prefix, section 6.2.1), without
        // indexing (0000, 4-bit, section 6.2.2) or never indexed (0001, 4-bit, 6.2.3).
        // Never-indexed is not kept apart in the result: an intermediary re-encoding the
        // field must keep it out of any table (section 6.2.3), and HpackEncoder indexes
        // nothing in the peer's table at all.
        const indexing = (b & 0x40) !== 0;
        const nameIndex = this.integer(block, indexing ? 6 : 4);
        if (nameIndex < 0) return this.fail(nameIndex === TRUNCATED ? 'truncated' : 'integer-overflow');
        if (nameIndex === 0) {
          name = this.string(block);
          if (typeof name !== 'string') return this.fail(name.reason);
        } else if (nameIndex <= STATIC_LENGTH) {
          name = STATIC_NAMES[nameIndex];
        } else {
          const d = nameIndex - STATIC_LENGTH - 1;
          if (d >= this.count) return this.fail('index-out-of-range');
          name = this.names[(this.newest - d + this.names.length) % this.names.length];
        }
        value = this.string(block);
        if (typeof value !== 'string') return this.fail(value.reason);
        if (indexing) this.insert(name, value);
      }
      fieldSeen = true;
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      if (listBytes <= this.maxHeaderListBytes) out.push(name, value);
      else {
        tooLarge = true;
        if (name === 'content-type') contentType = value;
      }
    }
    if (!tooLarge) return out;
    // The content-type may have come before the limit was passed: it is among `out` then.
    if (contentType === undefined) for (let i = 0; i < out.length; i += 2) if (out[i] === 'content-type') contentType = out[i + 1];
    return new HpackError('header-list-too-large', contentType);
  }

  private fail(reason: HpackError['reason']): HpackError {
    this.failed = true;
    return new HpackError(reason);
  }

  /**
   * Integer with an N-bit prefix (section 5.1) at this.pos; advances this.pos.
   * Returns TRUNCATED or OVERFLOW (negative) instead of a value on error.
   */
  private integer(block: Buffer, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = block[this.pos++] & max;
    if (value < max) return value;
    for (let shift = 0, n = 0; ; shift += 7, n++) {
      if (n === MAX_CONTINUATION_OCTETS) return OVERFLOW;
      if (this.pos >= block.length) return TRUNCATED;
      const b = block[this.pos++];
      // Multiplication, not <<: the shift reaches 28 and the sum may pass 2^31.
      value += (b & 0x7f) * 2 ** shift;
      if (value > MAX_INTEGER) return OVERFLOW;
      if ((b & 0x80) === 0) return value;
    }
  }

  /** String literal (section 5.2) at this.pos; advances this.pos. */
  private string(block: Buffer): string | HpackError {
    if (this.pos >= block.length) return new HpackError('truncated');
    const huffman = (block[this.pos] & 0x80) !== 0;
    const length = this.integer(block, 7);
    if (length < 0) return new HpackError(length === TRUNCATED ? 'truncated' : 'integer-overflow');
    const start = this.pos;
    if (length > block.length - start) return new HpackError('truncated');
    this.pos = start + length;
    return huffman ? huffmanDecode(block, start, this.pos) : latin1(block, start, this.pos);
  }

  /** Adds an entry (section 4.4): evicts the oldest until it fits, or empties the table if it never can. */
  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.capacity) {
      this.evict(this.capacity);
      return;
    }
    this.evict(entrySize);
    if (this.count === this.names.length) this.grow();
    this.newest = (this.newest + 1) % this.names.length;
    this.names[this.newest] = name;
    this.values[this.newest] = value;
    this.count++;
    this.size += entrySize;
  }

  /** Doubles the ring (up to maxSlots), oldest entry first at slot 0. */
  private grow(): void {
    const slots = this.names.length;
    const size = Math.min(this.maxSlots, slots * 2);
    const names = new Array<string>(size).fill('');
    const values = new Array<string>(size).fill('');
    for (let i = 0; i < this.count; i++) {
      const at = (this.newest - this.count + 1 + i + slots) % slots;
      names[i] = this.names[at];
      values[i] = this.values[at];
    }
    this.names = names;
    this.values = values;
    this.newest = this.count - 1;
  }

  /** Evicts oldest entries until `room` octets are free under the capacity (section 4.3). */
  private evict(room: number): void {
    const slots = this.names.length;
    while (this.count > 0 && this.size + room > this.capacity) {
      const oldest = (this.newest - this.count + 1 + slots) % slots;
      this.size -= this.names[oldest].length + this.values[oldest].length + ENTRY_OVERHEAD;
      this.names[oldest] = this.values[oldest] = '';
      this.count--;
    }
  }
}
