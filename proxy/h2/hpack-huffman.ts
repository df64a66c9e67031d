import { HpackError } from './hpack-error.js';

/**
 * Huffman decoding of HPACK string literals (RFC 7541 section 5.2, code of Appendix B).
 *
 * The code of Appendix B is canonical: within one length, codes are consecutive in symbol
 * order, and each length starts where the previous one ended, shifted left. So the code
 * lengths below are the whole table; the codes are rebuilt from them at module load (the
 * test checks every code against the hex column of Appendix B).
 *
 * Decoding is table-driven, 4 bits at a time: the 256 internal nodes of the code tree are
 * the states, and for each (state, nibble) a precomputed entry gives the next state and the
 * symbol completed on the way, if any (every code is at least 5 bits long, so a nibble
 * completes at most one). Two table loads per input byte, no objects, no per-bit branches.
 */

/** Code length in bits of symbols 0..255 and EOS (256), RFC 7541 Appendix B. */
// prettier-ignore
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // ' ' - '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // '0' - '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // '@' - 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 'P' - '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // '`' - 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 'p' - 127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

const EOS = 256;
const EMIT = 1 << 16;
const FAIL = 1 << 17;

/**
 * TRANSITIONS[state << 4 | nibble] = next state | symbol << 8 | EMIT | FAIL.
 * PADDING[state]: what ending the string in that state means (section 5.2): 0 = at a symbol
 * boundary or inside at most 7 bits of EOS's prefix (valid padding), 1 = inside EOS's
 * prefix but 8 bits or more (padding too long), 2 = padding that is not EOS's prefix.
 */
const { TRANSITIONS, PADDING } = buildTables();

function buildTables(): { TRANSITIONS: Uint32Array; PADDING: Uint8Array } {
  // The code tree: node 0 is the root; a child >= 0 is an internal node, < 0 is leaf ~symbol.
  // 257 leaves make exactly 256 internal nodes, so a state fits in a byte.
  const child = new Int32Array(2 * 256).fill(0x7fffffff);
  const depth = new Uint8Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  let nodes = 1;
  const symbols = LENGTHS.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  let code = 0;
  let prevLen = symbols[0].len;
  for (const { len, sym } of symbols) {
    code <<= len - prevLen;
    prevLen = len;
    let node = 0;
    for (let bit = len - 1; bit >= 0; bit--) {
      const slot = node * 2 + ((code >>> bit) & 1);
      if (bit === 0) {
        child[slot] = ~sym;
      } else {
        if (child[slot] === 0x7fffffff) {
          const n = nodes++;
          child[slot] = n;
          depth[n] = depth[node] + 1;
          allOnes[n] = allOnes[node] & (code >>> bit) & 1;
        }
        node = child[slot];
      }
    }
    code++;
  }
  if (nodes !== 256 || code !== 2 ** 30) throw new Error('hpack-huffman: code table is not a complete prefix code');

  const transitions = new Uint32Array(256 * 16);
  const padding = new Uint8Array(256);
  for (let s = 0; s < 256; s++) {
    padding[s] = allOnes[s] ? (depth[s] <= 7 ? 0 : 1) : 2;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = s;
      let entry = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const next = child[node * 2 + ((nibble >>> bit) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = ~next;
        if (sym === EOS) {
          entry = FAIL;
          break;
        }
        entry = EMIT | (sym << 8);
        node = 0;
      }
      transitions[(s << 4) | nibble] = entry & FAIL ? FAIL : entry | node;
    }
  }
  return { TRANSITIONS: transitions, PADDING: padding };
}

type Latin1 = { latin1Slice(start: number, end: number): string };

/**
 * Reused output bytes (a Huffman string decodes to at most 8/5 of its length), grown up to
 * SCRATCH_MAX; a longer string gets a buffer of its own, so one huge value does not stay
 * allocated for the life of the process.
 */
const SCRATCH_MAX = 64 * 1024;
let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes the Huffman-coded string src[start..end) to a latin1 string (one char per octet,
 * as node gives header values), or the section 5.2 error it contains.
 */
export function huffmanDecode(src: Buffer, start: number, end: number): string | HpackError {
  const max = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < max && max <= SCRATCH_MAX) scratch = Buffer.allocUnsafe(SCRATCH_MAX);
  const out = max <= scratch.length ? scratch : Buffer.allocUnsafe(max);
  const t = TRANSITIONS;
  let o = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const b = src[i];
    let e = t[(state << 4) | (b >>> 4)];
    if (e & FAIL) return new HpackError('huffman-eos');
    if (e & EMIT) out[o++] = (e >>> 8) & 0xff;
    state = e & 0xff;
    e = t[(state << 4) | (b & 0x0f)];
    if (e & FAIL) return new HpackError('huffman-eos');
    if (e & EMIT) out[o++] = (e >>> 8) & 0xff;
    state = e & 0xff;
  }
  const pad = PADDING[state];
  if (pad !== 0) return new HpackError(pad === 1 ? 'huffman-padding-too-long' : 'huffman-bad-padding');
  return (out as unknown as Latin1).latin1Slice(0, o);
}
