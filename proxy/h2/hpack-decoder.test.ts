/**
 * HpackDecoder against every example of RFC 7541 Appendix C (C.2 fields alone; C.3-C.6 the
 * request and response sequences, with the dynamic table after each block), then the
 * decoding errors: integers (section 5.1), indexes (2.3.3, 6.1), table size updates (4.2,
 * 6.3), truncation, and the header list bound (RFC 9113 section 6.5.2).
 */
import { HpackDecoder } from './hpack-decoder.js';
import { HpackError } from './hpack-error.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decoded(d: HpackDecoder, block: Buffer): string[] {
  const r = d.decode(block);
  if (r instanceof HpackError) throw new Error(`unexpected ${r.message}`);
  return r;
}

function refused(d: HpackDecoder, block: Buffer): HpackError {
  const r = d.decode(block);
  if (!(r instanceof HpackError)) throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r;
}

interface Step {
  block: string;
  fields: string[];
  /** Dynamic table after the block, newest first. */
  table: string[];
  size: number;
}

function sequence(maxTableSize: number, steps: Step[]): void {
  const d = new HpackDecoder(maxTableSize);
  for (const step of steps) {
    expect(decoded(d, hex(step.block))).toEqual(step.fields);
    expect(d.tableEntries()).toEqual(step.table);
    expect(d.tableSize).toBe(step.size);
  }
}

const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOC = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';

const REQUESTS = [
  {
    fields: [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'],
    table: [':authority', 'www.example.com'],
    size: 57,
  },
  {
    fields: [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache'],
    table: ['cache-control', 'no-cache', ':authority', 'www.example.com'],
    size: 110,
  },
  {
    fields: [':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com', 'custom-key', 'custom-value'],
    table: ['custom-key', 'custom-value', 'cache-control', 'no-cache', ':authority', 'www.example.com'],
    size: 164,
  },
];

const RESPONSES = [
  {
    fields: [':status', '302', 'cache-control', 'private', 'date', DATE1, 'location', LOC],
    table: ['location', LOC, 'date', DATE1, 'cache-control', 'private', ':status', '302'],
    size: 222,
  },
  {
    fields: [':status', '307', 'cache-control', 'private', 'date', DATE1, 'location', LOC],
    table: [':status', '307', 'location', LOC, 'date', DATE1, 'cache-control', 'private'],
    size: 222,
  },
  {
    fields: [':status', '200', 'cache-control', 'private', 'date', DATE2, 'location', LOC, 'content-encoding', 'gzip', 'set-cookie', COOKIE],
    table: ['set-cookie', COOKIE, 'content-encoding', 'gzip', 'date', DATE2],
    size: 215,
  },
];

describe('RFC 7541 Appendix C examples', () => {
  it('C.2.1 literal header field with indexing', () => {
    const d = new HpackDecoder(4096);
    expect(decoded(d, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'))).toEqual(['custom-key', 'custom-header']);
    expect(d.tableEntries()).toEqual(['custom-key', 'custom-header']);
    expect(d.tableSize).toBe(55);
  });

  it('C.2.2 literal header field without indexing', () => {
    const d = new HpackDecoder(4096);
    expect(decoded(d, hex('040c 2f73 616d 706c 652f 7061 7468'))).toEqual([':path', '/sample/path']);
    expect(d.tableEntries()).toEqual([]);
    expect(d.tableSize).toBe(0);
  });

  it('C.2.3 literal header field never indexed', () => {
    const d = new HpackDecoder(4096);
    expect(decoded(d, hex('1008 7061 7373 776f 7264 0673 6563 7265 74'))).toEqual(['password', 'secret']);
    expect(d.tableEntries()).toEqual([]);
  });

  it('C.2.4 indexed header field', () => {
    const d = new HpackDecoder(4096);
    expect(decoded(d, hex('82'))).toEqual([':method', 'GET']);
    expect(d.tableEntries()).toEqual([]);
  });

  it('C.3 requests without Huffman coding', () => {
    const blocks = [
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ];
    sequence(4096, REQUESTS.map((r, i) => ({ ...r, block: blocks[i] })));
  });

  it('C.4 requests with Huffman coding', () => {
    const blocks = [
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ];
    sequence(4096, REQUESTS.map((r, i) => ({ ...r, block: blocks[i] })));
  });

  it('C.5 responses without Huffman coding (256-octet table, with evictions)', () => {
    const blocks = [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
       6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
       3d31`,
    ];
    sequence(256, RESPONSES.map((r, i) => ({ ...r, block: blocks[i] })));
  });

  it('C.6 responses with Huffman coding (256-octet table, with evictions)', () => {
    const blocks = [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ];
    sequence(256, RESPONSES.map((r, i) => ({ ...r, block: blocks[i] })));
  });
});

describe('integers (RFC 7541 section 5.1)', () => {
  it('decodes the C.1 examples as table size updates: 10 and 1337 with a 5-bit prefix', () => {
    const d = new HpackDecoder(4096);
    // 001 prefix: C.1.1 is 01010 = 10; C.1.2 is 11111 10011010 00001010 = 1337.
    expect(decoded(d, Buffer.from([0x20 | 10]))).toEqual([]);
    expect(decoded(d, Buffer.from([0x20 | 31, 0x9a, 0x0a]))).toEqual([]);
    // 1337 is above a 1336 limit: the value was read right.
    expect(refused(new HpackDecoder(1336), Buffer.from([0x3f, 0x9a, 0x0a])).reason).toBe('table-size-too-large');
  });

  it('decodes a multi-octet index (C.1.3 style, 7-bit prefix) into the dynamic table', () => {
    const d = new HpackDecoder(8192);
    // Fill 100 entries with incremental indexing (literal name), then read the oldest: index 161.
    const blocks: Buffer[] = [];
    for (let i = 0; i < 100; i++) blocks.push(Buffer.from([0x40, 0x01, 0x6b, 0x02, 0x30 + Math.floor(i / 10), 0x30 + (i % 10)]));
    decoded(d, Buffer.concat(blocks));
    // 161 = 127 + 34: 0xff then 34.
    expect(decoded(d, Buffer.from([0xff, 34]))).toEqual(['k', '00']);
    expect(decoded(d, Buffer.from([0xbe]))).toEqual(['k', '99']);
  });

  it('refuses an integer too large in value', () => {
    // 2^31 + 126 as an index: prefix 127, then 0x7fffffff in four continuation octets.
    expect(refused(new HpackDecoder(), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])).reason).toBe('integer-overflow');
    expect(refused(new HpackDecoder(), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])).reason).toBe('integer-overflow');
  });

  it('refuses an integer too long in octets even when its value is small', () => {
    // 127 + 0 padded with continuation octets that add nothing.
    const r = refused(new HpackDecoder(), Buffer.from([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]));
    expect(r.reason).toBe('integer-overflow');
    expect(r.message).toMatch(/section 5\.1/);
    // Five continuation octets are still accepted: 127 + 1 with padding, an index of 128 (out of range here).
    expect(refused(new HpackDecoder(), Buffer.from([0xff, 0x81, 0x80, 0x80, 0x80, 0x00])).reason).toBe('index-out-of-range');
  });

  it('refuses an integer cut off by the end of the block', () => {
    expect(refused(new HpackDecoder(), Buffer.from([0xff])).reason).toBe('truncated');
    expect(refused(new HpackDecoder(), Buffer.from([0xff, 0x80])).reason).toBe('truncated');
    expect(refused(new HpackDecoder(), Buffer.from([0x3f, 0xe1])).reason).toBe('truncated');
  });
});

describe('indexes and literals', () => {
  it('refuses index 0 (section 6.1)', () => {
    const r = refused(new HpackDecoder(), Buffer.from([0x80]));
    expect(r.reason).toBe('index-zero');
    expect(r.code).toBe('COMPRESSION_ERROR');
  });

  it('refuses an index past the static and dynamic tables (section 2.3.3)', () => {
    expect(decoded(new HpackDecoder(), Buffer.from([0xbd]))).toEqual(['www-authenticate', '']);
    expect(refused(new HpackDecoder(), Buffer.from([0xbe])).reason).toBe('index-out-of-range');
    // A literal whose name index is past the tables.
    expect(refused(new HpackDecoder(), Buffer.from([0x7f, 0x00, 0x01, 0x61])).reason).toBe('index-out-of-range');
    expect(refused(new HpackDecoder(), Buffer.from([0x0f, 0x2f, 0x01, 0x61])).reason).toBe('index-out-of-range');
  });

  it('takes a literal name from the dynamic table', () => {
    const d = new HpackDecoder();
    decoded(d, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    // Without indexing, name index 62 (0x0f, 62 - 15 = 47 = 0x2f), value "x".
    expect(decoded(d, Buffer.from([0x0f, 0x2f, 0x01, 0x78]))).toEqual(['custom-key', 'x']);
    // Never indexed, same name: 0x1f 0x2f.
    expect(decoded(d, Buffer.from([0x1f, 0x2f, 0x01, 0x79]))).toEqual(['custom-key', 'y']);
    expect(d.tableEntries()).toEqual(['custom-key', 'custom-header']);
  });

  it('refuses a string longer than the rest of the block, and a block that ends inside a field', () => {
    expect(refused(new HpackDecoder(), Buffer.from([0x00, 0x05, 0x61, 0x62])).reason).toBe('truncated');
    expect(refused(new HpackDecoder(), Buffer.from([0x00, 0x01, 0x61])).reason).toBe('truncated');
    expect(refused(new HpackDecoder(), Buffer.from([0x44])).reason).toBe('truncated');
  });

  it('refuses a bad Huffman string inside a block (section 5.2)', () => {
    // Literal without indexing, name :path (4), value Huffman 1 octet 0x00: '0' then 3 zero bits.
    expect(refused(new HpackDecoder(), Buffer.from([0x04, 0x81, 0x00])).reason).toBe('huffman-bad-padding');
  });

  it('gives octets 0x80-0xff as latin1 characters', () => {
    expect(decoded(new HpackDecoder(), Buffer.from([0x00, 0x01, 0x78, 0x02, 0xe9, 0xff]))).toEqual(['x', '\xe9\xff']);
  });

  it('is unusable after a COMPRESSION_ERROR (RFC 9113 section 4.3)', () => {
    const d = new HpackDecoder();
    expect(refused(d, Buffer.from([0x80])).reason).toBe('index-zero');
    expect(refused(d, Buffer.from([0x82])).reason).toBe('decoder-failed');
  });
});

describe('dynamic table size and eviction (sections 4.2, 4.3, 4.4, 6.3)', () => {
  const entry = (name: string, value: string): Buffer =>
    Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);

  it('evicts the oldest entries to make room', () => {
    // 100-octet table: entries of 32 + 1 + 1 = 34 octets, two fit.
    const d = new HpackDecoder(100);
    decoded(d, Buffer.concat([entry('a', '1'), entry('b', '2'), entry('c', '3')]));
    expect(d.tableEntries()).toEqual(['c', '3', 'b', '2']);
    expect(d.tableSize).toBe(68);
    expect(decoded(d, Buffer.from([0xbe, 0xbf]))).toEqual(['c', '3', 'b', '2']);
    expect(refused(d, Buffer.from([0xc0])).reason).toBe('index-out-of-range');
  });

  it('keeps entries that fill the table exactly (section 4.4: evict only while it would exceed)', () => {
    const d = new HpackDecoder(68);
    decoded(d, Buffer.concat([entry('a', '1'), entry('b', '2')]));
    expect(d.tableEntries()).toEqual(['b', '2', 'a', '1']);
    expect(d.tableSize).toBe(68);
    // An entry of exactly the table's size takes it all.
    decoded(d, entry('cc', 'x'.repeat(34)));
    expect(d.tableEntries()).toEqual(['cc', 'x'.repeat(34)]);
    expect(d.tableSize).toBe(68);
  });

  it('empties the table for an entry larger than it, without error (section 4.4)', () => {
    const d = new HpackDecoder(100);
    decoded(d, Buffer.concat([entry('a', '1'), entry('big', 'x'.repeat(70))]));
    expect(d.tableEntries()).toEqual([]);
    expect(d.tableSize).toBe(0);
  });

  it('inserts an entry whose name is the entry it evicts (section 4.4)', () => {
    const d = new HpackDecoder(34 + 33);
    decoded(d, entry('a', '1'));
    // Name index 62 (the entry 'a'), value "22": 35 octets, so 'a' must be evicted first.
    decoded(d, Buffer.from([0x7e, 0x02, 0x32, 0x32]));
    expect(d.tableEntries()).toEqual(['a', '22']);
  });

  it('applies size updates at the start of a block, several in a row, evicting', () => {
    const d = new HpackDecoder(4096);
    decoded(d, Buffer.concat([entry('a', '1'), entry('b', '2')]));
    // Down to 0 (empties), then up to 40: one 34-octet entry fits.
    expect(decoded(d, Buffer.concat([Buffer.from([0x20, 0x3f, 0x09]), entry('c', '3'), entry('d', '4')]))).toEqual(['c', '3', 'd', '4']);
    expect(d.tableEntries()).toEqual(['d', '4']);
    // A block of nothing but a size update is valid.
    expect(decoded(d, Buffer.from([0x3f, 0xe1, 0x1f]))).toEqual([]);
    expect(d.tableEntries()).toEqual(['d', '4']);
  });

  it('grows its ring of entries as the table fills, keeping order and indexes, from a huge advertised size', () => {
    // SETTINGS_HEADER_TABLE_SIZE may be up to 2^32 - 1: that must not allocate up front.
    const d = new HpackDecoder(2 ** 32 - 1);
    const names: string[] = [];
    for (let round = 0; round < 3; round++) {
      const fields: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const name = `n${round}-${i}`;
        names.push(name);
        fields.push(entry(name, 'v'));
      }
      decoded(d, Buffer.concat(fields));
    }
    const all = d.tableEntries().filter((_, i) => i % 2 === 0);
    expect(all).toEqual([...names].reverse());
    // The oldest entry is index 62 + 899 = 961 = 127 + 834: 0xff, 834 = 0xc2 0x06.
    expect(decoded(d, Buffer.from([0xff, 0xc2, 0x06]))).toEqual(['n0-0', 'v']);
    // Shrink to 10 entries' worth (each 32 + 5 or 6 + 1), then add: eviction wraps the grown ring.
    decoded(d, Buffer.concat([Buffer.from([0x3f, 0xc1, 0x02]), entry('late', 'x')]));
    expect(d.tableSize).toBeLessThanOrEqual(400);
    expect(d.tableEntries().slice(0, 4)).toEqual(['late', 'x', 'n2-299', 'v']);
  });

  it('refuses a size update above SETTINGS_HEADER_TABLE_SIZE (section 6.3)', () => {
    const r = refused(new HpackDecoder(256), Buffer.from([0x3f, 0xe2, 0x01]));
    expect(r.reason).toBe('table-size-too-large');
    expect(r.message).toMatch(/section 6\.3/);
    expect(decoded(new HpackDecoder(256), Buffer.from([0x3f, 0xe1, 0x01]))).toEqual([]);
  });

  it('refuses a size update after a header field (section 4.2)', () => {
    const r = refused(new HpackDecoder(), Buffer.from([0x82, 0x20]));
    expect(r.reason).toBe('table-size-update-not-first');
    expect(r.message).toMatch(/section 4\.2/);
  });
});

describe('header list size bound (RFC 9113 section 6.5.2)', () => {
  it('accepts a list of exactly maxHeaderListBytes (name + value + 32 per field)', () => {
    // :method GET = 7 + 3 + 32 = 42; :path / = 5 + 1 + 32 = 38.
    expect(decoded(new HpackDecoder(4096, { maxHeaderListBytes: 80 }), Buffer.from([0x82, 0x84]))).toEqual([':method', 'GET', ':path', '/']);
    const r = refused(new HpackDecoder(4096, { maxHeaderListBytes: 79 }), Buffer.from([0x82, 0x84]));
    expect(r.reason).toBe('header-list-too-large');
    expect(r.code).toBe('HEADER_LIST_TOO_LARGE');
  });

  it('still applies the whole block to the table, so the next block decodes', () => {
    const d = new HpackDecoder(4096, { maxHeaderListBytes: 240 });
    // The first two blocks of C.3 fill the table with :authority and cache-control.
    decoded(d, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'));
    decoded(d, hex('8286 84be 5808 6e6f 2d63 6163 6865'));
    // A size update, then a block too large: two big literals with indexing.
    const big = Buffer.concat([
      Buffer.from([0x3f, 0xe1, 0x1f]),
      Buffer.from([0x40, 0x02]), Buffer.from('k1'), Buffer.from([0x64]), Buffer.alloc(100, 0x61),
      Buffer.from([0x40, 0x02]), Buffer.from('k2'), Buffer.from([0x64]), Buffer.alloc(100, 0x62),
    ]);
    expect(refused(d, big).reason).toBe('header-list-too-large');
    expect(d.tableEntries().filter((_, i) => i % 2 === 0)).toEqual(['k2', 'k1', 'cache-control', ':authority']);
    // Indexes 62..65 are the same for us as for the peer's encoder.
    expect(decoded(d, Buffer.from([0xbe]))).toEqual(['k2', 'b'.repeat(100)]);
    expect(decoded(d, Buffer.from([0xbf]))).toEqual(['k1', 'a'.repeat(100)]);
    expect(decoded(d, Buffer.from([0xc0, 0xc1]))).toEqual(['cache-control', 'no-cache', ':authority', 'www.example.com']);
  });

  it('still refuses a COMPRESSION_ERROR after the list went over the bound', () => {
    const d = new HpackDecoder(4096, { maxHeaderListBytes: 40 });
    expect(refused(d, Buffer.from([0x82, 0x82, 0x80])).reason).toBe('index-zero');
    expect(refused(d, Buffer.from([0x82])).reason).toBe('decoder-failed');
  });
});
