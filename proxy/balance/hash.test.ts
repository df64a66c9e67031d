import { splitMix64Fill, xxHash64 } from './hash.js';

const hex = (out: Uint32Array, i = 0): string => out[i].toString(16).padStart(8, '0') + out[i + 1].toString(16).padStart(8, '0');

describe('xxHash64', () => {
  // Expected values from the reference implementation (libxxhash 0.8.1, XXH64(bytes, len, 0)).
  it.each([
    ['', 'ef46db3751d8e999'],
    ['a', 'd24ec4f1a98c6e5b'],
    ['abc', '44bc2cf5ad770999'],
    ['user-42', '397e9d3a76af7c81'],
    ['10.0.0.1:80', '011facba8043b217'],
    ['[fd00::1]:8080', 'e7b68556e2962179'],
    ['0123456789abcdef0123456789abcdef', '642a94958e71e6c5'], // one 32-byte stripe
    ['0123456789abcdef0123456789abcdef0123456789-é€😀', 'f782e631ba557fe6'], // UTF-8, 52 bytes
    ['x'.repeat(100), '92f0de5a88a3c094'], // three stripes and a tail; larger than the first scratch buffer
    ['\ud83d', '3cf809391954c4fe'], // a lone surrogate hashes as U+FFFD, as TextEncoder encodes it
  ])('XXH64(%j) = %s', (input, expected) => {
    const out = new Uint32Array(2);
    xxHash64(input, out);
    expect(hex(out)).toBe(expected);
  });
});

describe('splitMix64Fill', () => {
  it("writes each seed's SplitMix64 sequence and owner (outputs checked against the 64-bit reference)", () => {
    const seeds = Uint32Array.of(0, 0, 0x12345678, 0x9abcdef0, 0xffffffff, 0xffffffff);
    const counts = [1, 6, 160];
    const hi = new Uint32Array(167);
    const lo = new Uint32Array(167);
    const owners = new Int32Array(167);
    splitMix64Fill(seeds, counts, hi, lo, owners);
    expect(hex(Uint32Array.of(hi[0], lo[0]))).toBe('e220a8397b1dcdaf'); // SplitMix64(seed 0), first output
    expect(hex(Uint32Array.of(hi[6], lo[6]))).toBe('5d51f5f75b762c59'); // output 5
    expect(hex(Uint32Array.of(hi[166], lo[166]))).toBe('3be06e952baa82b1'); // output 159, a carry out of the low half
    expect([owners[0], owners[1], owners[6], owners[7], owners[166]]).toEqual([0, 1, 1, 2, 2]);
  });
});
