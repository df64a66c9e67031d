/**
 * Random header lists and random blocks with a fixed seed (reproducible in CI);
 * `WREN_FUZZ_ITERATIONS=100000` (and `WREN_FUZZ_SEED`) for a longer run. Properties:
 *  - every random header list (static and new names, any latin1 value, long strings with
 *    multi-octet lengths) comes back from HpackEncoder -> HpackDecoder unchanged;
 *  - random bytes, and random mutations of valid blocks (the Appendix C sequences, decoded
 *    in a decoder holding the table the sequence built, and encoder output) never make the
 *    decoder throw: it returns a list of strings, in pairs, within maxHeaderListBytes, or an
 *    HpackError, and a list it returns is one a fresh encode of it decodes to again;
 *  - decoding time is linear in the block: a 1 MiB block of indexed fields takes well under
 *    a second.
 */
import { performance } from 'node:perf_hooks';
import { seededRandom, type Random } from '../../common/clock.js';
import { HpackDecoder } from './hpack-decoder.js';
import { HpackEncoder } from './hpack-encoder.js';
import { HpackError } from './hpack-error.js';

const ITERATIONS = Number(process.env.WREN_FUZZ_ITERATIONS ?? 2000);
const SEED = Number(process.env.WREN_FUZZ_SEED ?? 20261203);
const TIMEOUT = Math.max(30_000, ITERATIONS * 20);
const MAX_LIST = 8192;

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The Appendix C sequences (C.3-C.6) with the SETTINGS_HEADER_TABLE_SIZE each assumes. */
const SEQUENCES: { tableSize: number; blocks: Buffer[] }[] = [
  { tableSize: 4096, blocks: ['828684410f7777772e6578616d706c652e636f6d', '828684be58086e6f2d6361636865', '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565'].map(hex) },
  { tableSize: 4096, blocks: ['828684418cf1e3c2e5f23a6ba0ab90f4ff', '828684be5886a8eb10649cbf', '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'].map(hex) },
  {
    tableSize: 256,
    blocks: [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768
       7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153
       444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    ].map(hex),
  },
  {
    tableSize: 256,
    blocks: [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
       e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
       3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ].map(hex),
  },
];

const STATIC_NAMES = [':authority', ':method', ':path', ':scheme', ':status', 'accept', 'accept-encoding', 'content-type', 'content-length', 'cookie', 'set-cookie', 'user-agent', 'www-authenticate', 'via'];
const STATIC_VALUES = ['GET', 'POST', '/', '/index.html', 'http', 'https', '200', '204', '404', '500', 'gzip, deflate', ''];
const TOKEN = "abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";

function randomString(random: Random, alphabet: string | null, maxLength: number): string {
  const len = random() < 0.1 ? 0 : Math.floor(random() * maxLength);
  let s = '';
  for (let i = 0; i < len; i++) {
    s += alphabet ? alphabet[Math.floor(random() * alphabet.length)] : String.fromCharCode(Math.floor(random() * 256));
  }
  return s;
}

/** A random header list: static names and values often, new lowercase names and any latin1 value too. */
function randomFields(random: Random): string[] {
  const fields: string[] = [];
  const n = Math.floor(random() * 20);
  for (let i = 0; i < n; i++) {
    const name = random() < 0.5 ? STATIC_NAMES[Math.floor(random() * STATIC_NAMES.length)] : 'x-' + randomString(random, TOKEN, random() < 0.1 ? 300 : 20);
    const value = random() < 0.3 ? STATIC_VALUES[Math.floor(random() * STATIC_VALUES.length)] : randomString(random, null, random() < 0.1 ? 2000 : 40);
    fields.push(name, value);
  }
  return fields;
}

function encoded(enc: HpackEncoder, fields: string[]): Buffer {
  const out = Buffer.alloc(enc.encodedLength(fields));
  expect(enc.encode(fields, out)).toBe(out.length);
  return out;
}

function mutate(random: Random, b: Buffer): Buffer {
  const bytes = [...b];
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * (bytes.length + 1));
    switch (Math.floor(random() * 6)) {
      case 0: // flip a bit
        if (bytes.length) bytes[at % bytes.length] ^= 1 << Math.floor(random() * 8);
        break;
      case 1: // replace an octet
        if (bytes.length) bytes[at % bytes.length] = Math.floor(random() * 256);
        break;
      case 2: // insert octets
        bytes.splice(at, 0, ...Array.from({ length: 1 + Math.floor(random() * 4) }, () => Math.floor(random() * 256)));
        break;
      case 3: // delete octets
        bytes.splice(at, 1 + Math.floor(random() * 4));
        break;
      case 4: // truncate
        bytes.length = Math.min(bytes.length, at);
        break;
      default: // a run of 0xff (long integers, EOS)
        bytes.splice(at, 0, ...new Array<number>(1 + Math.floor(random() * 8)).fill(0xff));
    }
  }
  return Buffer.from(bytes);
}

/** Decodes and checks the outcome's shape; returns it. */
function decodeChecked(d: HpackDecoder, block: Buffer): string[] | HpackError {
  let r: string[] | HpackError;
  expect(() => (r = d.decode(block))).not.toThrow();
  r = r!;
  if (r instanceof HpackError) {
    expect(r.message).toMatch(/^(COMPRESSION_ERROR|HEADER_LIST_TOO_LARGE): .*RFC/);
    return r;
  }
  expect(r.length % 2).toBe(0);
  let size = 0;
  for (let i = 0; i < r.length; i += 2) {
    expect(typeof r[i]).toBe('string');
    expect(typeof r[i + 1]).toBe('string');
    size += r[i].length + r[i + 1].length + 32;
  }
  expect(size).toBeLessThanOrEqual(MAX_LIST);
  return r;
}

describe('HPACK fuzz', () => {
  it('round-trips random header lists through HpackEncoder and HpackDecoder', () => {
    const random = seededRandom(SEED);
    const enc = new HpackEncoder();
    // Our encoder's size update to 0 is valid for any table we advertise, 0 included.
    const decoders = [new HpackDecoder(4096), new HpackDecoder(0)];
    for (let i = 0; i < ITERATIONS / 4; i++) {
      const fields = randomFields(random);
      for (let f = 0; f < fields.length; f += 2) expect(fields[f]).toBe(fields[f].toLowerCase());
      const out = Buffer.alloc(enc.encodedLength(fields) + 16);
      expect(enc.encode(fields, out, 16)).toBe(out.length);
      for (const d of decoders) {
        expect(d.decode(out.subarray(16))).toEqual(fields);
        // Nothing was inserted into the peer's table.
        expect(d.tableSize).toBe(0);
      }
    }
  }, TIMEOUT);

  it('round-trips random header lists with the dynamic table, through limit changes, one decoder for the connection', () => {
    const random = seededRandom(SEED + 1);
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    // Indexed names with a few values each, so that entries are hit, added and evicted; other names as above.
    const names = [':authority', ':path', 'content-type', 'user-agent', 'x-forwarded-client-cert', 'grpc-status', 'te', 'date'];
    const pool = Array.from({ length: 12 }, (_, i) => (i % 4 === 3 ? 'v'.repeat(900 + i) : `value-${i}`));
    let limit = 4096;
    enc.setLimit(limit);
    for (let i = 0; i < ITERATIONS / 4; i++) {
      if (random() < 0.05) {
        // A new SETTINGS_HEADER_TABLE_SIZE from the peer, now and then twice between blocks.
        limit = [0, 100, 1000, 4096, 8192][Math.floor(random() * 5)];
        enc.setLimit(limit);
        if (random() < 0.3) enc.setLimit((limit = [0, 300, 4096][Math.floor(random() * 3)]));
      }
      const fields = random() < 0.3 ? randomFields(random) : [];
      const n = Math.floor(random() * 12);
      for (let k = 0; k < n; k++) fields.push(names[Math.floor(random() * names.length)], pool[Math.floor(random() * pool.length)]);
      const block = enc.block(fields);
      expect(block.length).toBeLessThanOrEqual(enc.bound(fields));
      expect(dec.decode(block)).toEqual(fields);
      expect(dec.tableSize).toBeLessThanOrEqual(Math.min(limit, 4096));
    }
  }, TIMEOUT);

  it('never throws on random bytes', () => {
    const random = seededRandom(SEED + 1);
    let lists = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const block = Buffer.from(Array.from({ length: Math.floor(random() * 48) }, () => Math.floor(random() * 256)));
      if (!(decodeChecked(new HpackDecoder(4096, { maxHeaderListBytes: MAX_LIST }), block) instanceof HpackError)) lists++;
    }
    // Some random blocks are valid (an empty one at least), most are not.
    expect(lists).toBeGreaterThan(0);
    expect(lists).toBeLessThan(ITERATIONS);
  }, TIMEOUT);

  it('never throws on mutated valid blocks, and what it accepts survives a re-encode', () => {
    const random = seededRandom(SEED + 2);
    const enc = new HpackEncoder();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      let d: HpackDecoder;
      let target: Buffer;
      if (random() < 0.5) {
        // A block of a C sequence, mutated, decoded with the table the sequence built before it.
        const seq = SEQUENCES[Math.floor(random() * SEQUENCES.length)];
        const k = Math.floor(random() * seq.blocks.length);
        d = new HpackDecoder(seq.tableSize, { maxHeaderListBytes: MAX_LIST });
        for (let j = 0; j < k; j++) expect(d.decode(seq.blocks[j])).not.toBeInstanceOf(HpackError);
        target = mutate(random, seq.blocks[k]);
      } else {
        d = new HpackDecoder(4096, { maxHeaderListBytes: MAX_LIST });
        target = mutate(random, encoded(enc, randomFields(random)));
      }
      const r = decodeChecked(d, target);
      if (r instanceof HpackError) {
        refused++;
        continue;
      }
      accepted++;
      expect(new HpackDecoder(0).decode(encoded(new HpackEncoder(), r))).toEqual(r);
    }
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  }, TIMEOUT);

  it('decodes in time linear in the block: 1 MiB of indexed fields, long integers, long Huffman strings', () => {
    const cases: Buffer[] = [
      // 1 MiB of ':method GET' (0x82), most dropped past the list bound.
      Buffer.alloc(1 << 20, 0x82),
      // One literal (:path) whose Huffman value fills the rest of 1 MiB: length 2^20 - 5 =
      // 127 + 124 + 126 * 2^7 + 63 * 2^14; octets 0x18 decode to 'a' and '0' in turn.
      Buffer.concat([Buffer.from([0x04, 0xff, 0xfc, 0xfe, 0x3f]), Buffer.alloc((1 << 20) - 5, 0x18)]),
      // 1 MiB of table size updates to 0.
      Buffer.alloc(1 << 20, 0x20),
      // 1 MiB of maximal integers refused at once: the time is in the first one.
      Buffer.alloc(1 << 20, 0xff),
    ];
    for (const block of cases) {
      const d = new HpackDecoder(4096, { maxHeaderListBytes: MAX_LIST });
      const t0 = performance.now();
      decodeChecked(d, block);
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  }, TIMEOUT);
});
