/**
 * The Huffman decoder against the code of RFC 7541 Appendix B, typed here independently of
 * the module's length table (code in hex / length in bits, symbols 0..256): every symbol
 * decodes, the examples of Appendix C decode, and the decoding errors of section 5.2 are
 * refused.
 */
import { seededRandom } from '../../common/clock.js';
import { HpackError } from './hpack-error.js';
import { huffmanDecode } from './hpack-huffman.js';

// prettier-ignore
const APPENDIX_B = `
1ff8/13 7fffd8/23 fffffe2/28 fffffe3/28 fffffe4/28 fffffe5/28 fffffe6/28 fffffe7/28
fffffe8/28 ffffea/24 3ffffffc/30 fffffe9/28 fffffea/28 3ffffffd/30 fffffeb/28 fffffec/28
fffffed/28 fffffee/28 fffffef/28 ffffff0/28 ffffff1/28 ffffff2/28 3ffffffe/30 ffffff3/28
ffffff4/28 ffffff5/28 ffffff6/28 ffffff7/28 ffffff8/28 ffffff9/28 ffffffa/28 ffffffb/28
14/6 3f8/10 3f9/10 ffa/12 1ff9/13 15/6 f8/8 7fa/11 3fa/10 3fb/10 f9/8 7fb/11 fa/8 16/6 17/6 18/6
0/5 1/5 2/5 19/6 1a/6 1b/6 1c/6 1d/6 1e/6 1f/6 5c/7 fb/8 7ffc/15 20/6 ffb/12 3fc/10
1ffa/13 21/6 5d/7 5e/7 5f/7 60/7 61/7 62/7 63/7 64/7 65/7 66/7 67/7 68/7 69/7 6a/7
6b/7 6c/7 6d/7 6e/7 6f/7 70/7 71/7 72/7 fc/8 73/7 fd/8 1ffb/13 7fff0/19 1ffc/13 3ffc/14 22/6
7ffd/15 3/5 23/6 4/5 24/6 5/5 25/6 26/6 27/6 6/5 74/7 75/7 28/6 29/6 2a/6 7/5
2b/6 76/7 2c/6 8/5 9/5 2d/6 77/7 78/7 79/7 7a/7 7b/7 7ffe/15 7fc/11 3ffd/14 1ffd/13 ffffffc/28
fffe6/20 3fffd2/22 fffe7/20 fffe8/20 3fffd3/22 3fffd4/22 3fffd5/22 7fffd9/23
3fffd6/22 7fffda/23 7fffdb/23 7fffdc/23 7fffdd/23 7fffde/23 ffffeb/24 7fffdf/23
ffffec/24 ffffed/24 3fffd7/22 7fffe0/23 ffffee/24 7fffe1/23 7fffe2/23 7fffe3/23
7fffe4/23 1fffdc/21 3fffd8/22 7fffe5/23 3fffd9/22 7fffe6/23 7fffe7/23 ffffef/24
3fffda/22 1fffdd/21 fffe9/20 3fffdb/22 3fffdc/22 7fffe8/23 7fffe9/23 1fffde/21
7fffea/23 3fffdd/22 3fffde/22 fffff0/24 1fffdf/21 3fffdf/22 7fffeb/23 7fffec/23
1fffe0/21 1fffe1/21 3fffe0/22 1fffe2/21 7fffed/23 3fffe1/22 7fffee/23 7fffef/23
fffea/20 3fffe2/22 3fffe3/22 3fffe4/22 7ffff0/23 3fffe5/22 3fffe6/22 7ffff1/23
3ffffe0/26 3ffffe1/26 fffeb/20 7fff1/19 3fffe7/22 7ffff2/23 3fffe8/22 1ffffec/25
3ffffe2/26 3ffffe3/26 3ffffe4/26 7ffffde/27 7ffffdf/27 3ffffe5/26 fffff1/24 1ffffed/25
7fff2/19 1fffe3/21 3ffffe6/26 7ffffe0/27 7ffffe1/27 3ffffe7/26 7ffffe2/27 fffff2/24
1fffe4/21 1fffe5/21 3ffffe8/26 3ffffe9/26 ffffffd/28 7ffffe3/27 7ffffe4/27 7ffffe5/27
fffec/20 fffff3/24 fffed/20 1fffe6/21 3fffe9/22 1fffe7/21 1fffe8/21 7ffff3/23
3fffea/22 3fffeb/22 1ffffee/25 1ffffef/25 fffff4/24 fffff5/24 3ffffea/26 7ffff4/23
3ffffeb/26 7ffffe6/27 3ffffec/26 3ffffed/26 7ffffe7/27 7ffffe8/27 7ffffe9/27 7ffffea/27
7ffffeb/27 ffffffe/28 7ffffec/27 7ffffed/27 7ffffee/27 7ffffef/27 7fffff0/27 3ffffee/26
3fffffff/30
`.trim().split(/\s+/).map((t) => {
  const [code, len] = t.split('/');
  return { code: parseInt(code, 16), len: Number(len) };
});
const EOS = 256;

/** Huffman-encodes symbols with the table above, padding with the most significant bits of EOS (section 5.2). */
function encode(symbols: number[], padBits?: number[]): Buffer {
  const bits: number[] = [];
  for (const s of symbols) {
    const { code, len } = APPENDIX_B[s];
    for (let i = len - 1; i >= 0; i--) bits.push(Math.floor(code / 2 ** i) & 1);
  }
  if (padBits) bits.push(...padBits);
  else while (bits.length % 8) bits.push(1);
  if (bits.length % 8) throw new Error('test encoder: padding must complete the last octet');
  const out = Buffer.alloc(bits.length / 8);
  bits.forEach((b, i) => (out[i >> 3] |= b << (7 - (i & 7))));
  return out;
}

const decode = (b: Buffer): string | HpackError => huffmanDecode(b, 0, b.length);
const symbolsOf = (s: string): number[] => [...Buffer.from(s, 'latin1')];

describe('Huffman code of RFC 7541 Appendix B', () => {
  it('has 257 codes in the test table', () => {
    expect(APPENDIX_B).toHaveLength(257);
    expect(APPENDIX_B[EOS]).toEqual({ code: 0x3fffffff, len: 30 });
  });

  it('decodes every symbol 0..255 alone, and after and before another', () => {
    for (let s = 0; s < 256; s++) {
      expect(decode(encode([s]))).toBe(String.fromCharCode(s));
      expect(decode(encode([0x61, s, 0x7a]))).toBe('a' + String.fromCharCode(s) + 'z');
    }
  });

  it('decodes all 256 octets in random orders, at any offset in a larger buffer', () => {
    const random = seededRandom(7541);
    for (let round = 0; round < 20; round++) {
      const symbols = Array.from({ length: 256 }, (_, i) => i);
      for (let i = symbols.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [symbols[i], symbols[j]] = [symbols[j], symbols[i]];
      }
      const body = encode(symbols);
      const framed = Buffer.concat([Buffer.from([0x00, 0xff]), body, Buffer.from([0x00])]);
      expect(huffmanDecode(framed, 2, 2 + body.length)).toBe(Buffer.from(symbols).toString('latin1'));
    }
  });

  it('decodes the Huffman strings of Appendix C.4 and C.6, and the table above encodes them identically', () => {
    const cases: [string, string][] = [
      ['f1e3c2e5f23a6ba0ab90f4ff', 'www.example.com'],
      ['a8eb10649cbf', 'no-cache'],
      ['25a849e95ba97d7f', 'custom-key'],
      ['25a849e95bb8e8b4bf', 'custom-value'],
      ['6402', '302'],
      ['aec3771a4b', 'private'],
      ['d07abe941054d444a8200595040b8166e082a62d1bff', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['9d29ad171863c78f0b97c8e9ae82ae43d3', 'https://www.example.com'],
      ['9bd9ab', 'gzip'],
      [
        '94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
        'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
      ],
    ];
    for (const [hex, text] of cases) {
      expect(decode(Buffer.from(hex, 'hex'))).toBe(text);
      expect(encode(symbolsOf(text)).toString('hex')).toBe(hex);
    }
  });

  it('decodes strings longer than its reused buffer, and short ones after them', () => {
    const random = seededRandom(41);
    for (const length of [70_000, 5]) {
      const symbols = Array.from({ length }, () => [0x30, 0x61, 0x65, 0x74, 0x7e, 0xc7][Math.floor(random() * 6)]);
      expect(decode(encode(symbols))).toBe(Buffer.from(symbols).toString('latin1'));
    }
  });

  it('decodes the empty string', () => {
    expect(decode(Buffer.alloc(0))).toBe('');
  });

  it('accepts padding of exactly 7 bits of EOS (section 5.2)', () => {
    // Symbol 199 is 25 bits long: 7 bits of padding complete the fourth octet.
    const b = encode([199]);
    expect(b).toHaveLength(4);
    expect(b[3] & 0x7f).toBe(0x7f);
    expect(decode(b)).toBe('\xc7');
  });

  it('refuses padding longer than 7 bits (section 5.2)', () => {
    // 'a' (5 bits) + 3 padding bits, then a whole octet of ones: 11 bits of EOS prefix.
    const r = decode(encode([0x61], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
    expect(r).toBeInstanceOf(HpackError);
    expect((r as HpackError).reason).toBe('huffman-padding-too-long');
    expect((r as HpackError).code).toBe('COMPRESSION_ERROR');
    expect((r as HpackError).message).toMatch(/section 5\.2/);
    // Only padding, a full octet of ones, no symbol at all.
    expect((decode(Buffer.from([0xff])) as HpackError).reason).toBe('huffman-padding-too-long');
  });

  it('refuses padding that is not the most significant bits of EOS (section 5.2)', () => {
    for (const pad of [[0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1]]) {
      const r = decode(encode([0x61], pad));
      expect((r as HpackError).reason).toBe('huffman-bad-padding');
    }
    // Two octets: 'a' 'a' (10 bits), then 6 bits with a zero among them.
    expect((decode(encode([0x61, 0x61], [1, 1, 0, 1, 1, 1])) as HpackError).reason).toBe('huffman-bad-padding');
  });

  it('refuses EOS inside the string (section 5.2)', () => {
    expect((decode(encode([EOS])) as HpackError).reason).toBe('huffman-eos');
    expect((decode(encode([0x61, EOS, 0x62])) as HpackError).reason).toBe('huffman-eos');
    expect((decode(Buffer.from([0xff, 0xff, 0xff, 0xff])) as HpackError).reason).toBe('huffman-eos');
  });

  it('never throws on random input, and what it accepts re-encodes to the same octets', () => {
    const random = seededRandom(20261203);
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * 256)));
      const r = decode(b);
      if (typeof r === 'string') {
        accepted++;
        expect(encode(symbolsOf(r)).equals(b)).toBe(true);
      } else {
        expect(r).toBeInstanceOf(HpackError);
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});
