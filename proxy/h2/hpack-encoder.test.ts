/**
 * HpackEncoder: the exact octets for the representations it uses (the C.2 examples it can
 * produce), the one table size update per connection, exact lengths and short buffers.
 * Round trips of random lists through HpackDecoder are in hpack-fuzz.test.ts, nghttp2
 * reading our blocks in hpack-nghttp2.test.ts.
 */
import { HpackDecoder } from './hpack-decoder.js';
import { HpackEncoder } from './hpack-encoder.js';

function block(enc: HpackEncoder, fields: Parameters<HpackEncoder['encode']>[0]): Buffer {
  const out = Buffer.alloc(enc.encodedLength(fields));
  expect(enc.encode(fields, out)).toBe(out.length);
  return out;
}

/** An encoder whose first block (with the table size update) is already out. */
function warmEncoder(): HpackEncoder {
  const enc = new HpackEncoder();
  expect(block(enc, [])).toEqual(Buffer.from([0x20]));
  return enc;
}

describe('HpackEncoder octets', () => {
  it('block() writes what encodedLength() and encode() write, each time (one pass, any length)', () => {
    const lists: Parameters<HpackEncoder['encode']>[0][] = [
      [':method', 'GET', ':path', '/', 'accept-encoding', 'gzip, deflate'],
      // A static name with a value longer than any of its static values: a literal, not looked up.
      ['accept-encoding', 'gzip, deflate, br, zstd, identity', 'user-agent', 'u'.repeat(300)],
      { ':status': '200', 'content-type': 'application/grpc', 'set-cookie': ['a=1', 'b=2'], 'x-long': 'v'.repeat(5000) },
      [],
    ];
    const a = new HpackEncoder();
    const b = new HpackEncoder();
    for (const fields of lists) {
      const viaBlock = a.block(fields);
      const out = Buffer.alloc(b.encodedLength(fields));
      expect(b.encode(fields, out)).toBe(out.length);
      expect(viaBlock).toEqual(out);
    }
    expect(new HpackDecoder(0).decode(new HpackEncoder().block(lists[1]))).toEqual(lists[1]);
  });

  it('starts the first block of a connection, and only the first, with a table size update to 0 (sections 4.2, 6.3)', () => {
    const enc = new HpackEncoder();
    expect(block(enc, [':method', 'GET'])).toEqual(Buffer.from([0x20, 0x82]));
    expect(block(enc, [':method', 'GET'])).toEqual(Buffer.from([0x82]));
  });

  it('writes C.2.4 (indexed) and C.2.2 (literal without indexing, indexed name) as the RFC does', () => {
    const enc = warmEncoder();
    expect(block(enc, [':method', 'GET']).toString('hex')).toBe('82');
    expect(block(enc, [':path', '/sample/path']).toString('hex')).toBe('040c2f73616d706c652f70617468');
  });

  it('writes a new name as a literal without indexing, and the C.3.1 request with static indexes', () => {
    const enc = warmEncoder();
    // Like C.2.1 but without indexing: 0x00 instead of 0x40.
    expect(block(enc, ['custom-key', 'custom-header']).toString('hex')).toBe('000a637573746f6d2d6b65790d637573746f6d2d686561646572');
    // C.3.1 without the insertion: :authority goes as 0x01 (4-bit prefix name index 1).
    expect(block(enc, [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com']).toString('hex')).toBe(
      '828684010f7777772e6578616d706c652e636f6d',
    );
  });

  it('uses a static index for a name with an empty value, and two octets for name indexes from 15', () => {
    const enc = warmEncoder();
    expect(block(enc, ['accept-charset', ''])).toEqual(Buffer.from([0x80 | 15]));
    // www-authenticate is 61: 0x0f then 61 - 15 = 46.
    expect(block(enc, ['www-authenticate', 'x'])).toEqual(Buffer.from([0x0f, 46, 0x01, 0x78]));
    // :status 200 whole, :status 201 by name (8).
    expect(block(enc, [':status', '200', ':status', '201'])).toEqual(Buffer.from([0x88, 0x08, 0x03, 0x32, 0x30, 0x31]));
  });

  it('writes multi-octet string lengths (section 5.1)', () => {
    const enc = warmEncoder();
    const value = 'v'.repeat(1337);
    const b = block(enc, ['x', value]);
    // 0x00, name "x", value length 1337 = 127 + 1210: 0x7f, 0xba, 0x09.
    expect([...b.subarray(0, 6)]).toEqual([0x00, 0x01, 0x78, 0x7f, 0xba, 0x09]);
    expect(b.subarray(6).toString('latin1')).toBe(value);
  });

  it('writes latin1 strings of every length around the loop-copy bound (64) octet for octet', () => {
    const enc = warmEncoder();
    for (const n of [0, 1, 62, 63, 64, 65, 200]) {
      const value = 'a\u00e9\u00ff-'.repeat(n).slice(0, n);
      const name = `x-${'n'.repeat(n)}`;
      const b = block(enc, [name, value]);
      expect(new HpackDecoder(4096).decode(b)).toEqual([name, value]);
      expect(b.includes(Buffer.from(value, 'latin1'))).toBe(true);
    }
  });

  it("with the peer's table: indexes a repeated field of an indexed name (6.2.1, then 6.1), never a per-message or secret one", () => {
    const enc = new HpackEncoder();
    enc.setLimit(4096);
    const dec = new HpackDecoder(4096);
    const fields = [':authority', 'echo:50051', 'content-type', 'application/grpc', 'x-request-id', 'abc', 'authorization', 'Bearer t'];
    const first = enc.block(fields);
    // Size updates to 0 and to 4096 (001 11111, then 4065 = 0xe1 0x1f), then :authority with
    // incremental indexing and its static name index 1 (01 000001).
    expect([...first.subarray(0, 5)]).toEqual([0x20, 0x3f, 0xe1, 0x1f, 0x41]);
    expect(dec.decode(first)).toEqual(fields);
    expect(dec.tableSize).toBe(':authority'.length + 'echo:50051'.length + 32 + 'content-type'.length + 'application/grpc'.length + 32);
    const second = enc.block(fields);
    // The two indexed fields are one octet each now: 62 (newest, content-type) and 63.
    expect([...second.subarray(0, 2)]).toEqual([0x80 | 63, 0x80 | 62]);
    // The rest, the two literals without indexing, as in the first block.
    expect(second.subarray(2).equals(first.subarray(first.length - (second.length - 2)))).toBe(true);
    expect(dec.decode(second)).toEqual(fields);
    // x-request-id and authorization stay literals without indexing.
    expect(second.includes(Buffer.from('Bearer t'))).toBe(true);
    expect(second.includes(Buffer.from('abc'))).toBe(true);
  });

  it("with the peer's table: an indexed name outside the static table goes in with its name as a literal; a static field of a name not indexed is its static index", () => {
    const enc = new HpackEncoder();
    enc.setLimit(4096);
    const dec = new HpackDecoder(4096);
    const fields = [':method', 'POST', 'grpc-status', '0', 'x-trace-note', 'n'];
    const first = enc.block(fields);
    // After the two size updates: :method POST is static index 3 (1 0000011); grpc-status
    // (not in the static table) is a literal with incremental indexing and a new name (0x40).
    expect([...first.subarray(4, 6)]).toEqual([0x83, 0x40]);
    expect(dec.decode(first)).toEqual(fields);
    expect(dec.tableSize).toBe('grpc-status'.length + 1 + 32);
    const second = enc.block(fields);
    // :method POST again static 3, grpc-status 0 the newest dynamic entry (62), x-trace-note a literal without indexing, new name (0x00).
    expect([...second.subarray(0, 3)]).toEqual([0x83, 0x80 | 62, 0x00]);
    expect(dec.decode(second)).toEqual(fields);
    expect(dec.tableSize).toBe('grpc-status'.length + 1 + 32);
  });

  it('signals a lowered limit at the next block and evicts; a :path with a query, or an entry over 3/4 of the table, is not indexed', () => {
    const enc = new HpackEncoder();
    enc.setLimit(4096);
    const dec = new HpackDecoder(4096);
    dec.decode(enc.block([':path', '/a', 'user-agent', 'u']));
    expect(dec.tableSize).toBe(2 * 32 + ':path/a'.length + 'user-agentu'.length);
    enc.setLimit(60);
    const b = enc.block([':path', '/a']);
    // Size update to 60 (001 11111, 29), everything evicted: :path /a goes in again.
    expect([...b.subarray(0, 3)]).toEqual([0x3f, 29, 0x44]);
    expect(dec.decode(b)).toEqual([':path', '/a']);
    expect(dec.tableSize).toBe(39);
    enc.setLimit(4096);
    const other = [':path', '/q?token=1', 'user-agent', 'x'.repeat(3100)];
    expect(dec.decode(enc.block(other))).toEqual(other);
    expect(dec.tableSize).toBe(39);
    expect(() => enc.encodedLength(other)).toThrow(/bound/);
  });

  it('takes a record, with arrays as repeated fields, like the flat list', () => {
    const a = warmEncoder();
    const b = warmEncoder();
    expect(block(a, { ':status': '200', 'set-cookie': ['a=1', 'b=2'], 'x-skip': undefined, 'x-a': 'b' })).toEqual(
      block(b, [':status', '200', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-a', 'b']),
    );
  });

  it('writes at an offset, and throws a RangeError without changing state when the buffer is short', () => {
    const enc = new HpackEncoder();
    const fields = [':method', 'POST', 'content-type', 'application/grpc'];
    const n = enc.encodedLength(fields);
    for (let size = 0; size < n; size++) {
      expect(() => enc.encode(fields, Buffer.alloc(9 + size), 9)).toThrow(RangeError);
    }
    // Still the first block: the size update is still due.
    expect(enc.encodedLength(fields)).toBe(n);
    const out = Buffer.alloc(9 + n + 4, 0xee);
    expect(enc.encode(fields, out, 9)).toBe(9 + n);
    expect(out.subarray(0, 9).every((b) => b === 0xee)).toBe(true);
    expect(out.subarray(9 + n).every((b) => b === 0xee)).toBe(true);
    expect(new HpackDecoder(0).decode(out.subarray(9, 9 + n))).toEqual(fields);
    expect(enc.encodedLength(fields)).toBe(n - 1);
  });
});
