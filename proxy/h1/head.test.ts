import { setFlagsFromString } from 'node:v8';
import { fieldsToHeaders } from './head.js';
import { seededRandom } from '../../common/clock.js';

const F = ['content-type', 'application/grpc', 'content-length', '0', 'wren-content-length', '7', 'te', 'trailers', 'x-a', '1'];

test('as-is: a message from the app or a client keeps its content-length and any field named like a mesh one', () => {
  expect(fieldsToHeaders(F)).toEqual({ 'content-type': 'application/grpc', 'content-length': '0', 'wren-content-length': '7', 'x-a': '1' });
});

test("from-mesh: an HTTP/2 message sent chunked between the sidecars gets its own content-length back, the hop's is dropped", () => {
  expect(fieldsToHeaders(F, false, 'from-mesh')).toEqual({ 'content-type': 'application/grpc', 'content-length': '7', 'x-a': '1' });
  // Without one, no content-length at all (END_STREAM frames an HTTP/2 message).
  expect(fieldsToHeaders(['content-length', '12', 'x-a', '1'], false, 'from-mesh')).toEqual({ 'x-a': '1' });
  // Not a plain number: dropped, never passed on as a content-length.
  for (const bad of ['-1', '1e3', '12, 12', '', '1234567890123456']) {
    expect(fieldsToHeaders(['wren-content-length', bad], false, 'from-mesh')).toEqual({});
  }
});

test('drop-mesh: another message from a peer sidecar loses a wren-content-length and keeps its content-length', () => {
  expect(fieldsToHeaders(F, false, 'drop-mesh')).toEqual({ 'content-type': 'application/grpc', 'content-length': '0', 'x-a': '1' });
});

test('the map is built without deletes: it stays a fast-mode object (a delete would make it a dictionary for every later read)', () => {
  setFlagsFromString('--allow-natives-syntax');
  const hasFastProperties = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
  const deleted = fieldsToHeaders(F);
  delete deleted['wren-content-length'];
  expect(hasFastProperties(deleted)).toBe(false); // what the old way (build, then delete) gave
  expect(hasFastProperties(fieldsToHeaders(F, false, 'from-mesh'))).toBe(true);
  expect(hasFastProperties(fieldsToHeaders(F, false, 'drop-mesh'))).toBe(true);
});

test('fields a Connection field lists are hop-by-hop: dropped, whatever their case, with a changing value and two Connection fields', () => {
  const msg = (conn: string) => ['connection', conn, 'keep-alive', 'timeout=5', 'x-hop', '1', 'x-end', '2'];
  // The same value twice (the second from the memo), then another: each message by its own Connection field.
  expect(fieldsToHeaders(msg('keep-alive, X-Hop'))).toEqual({ 'x-end': '2' });
  expect(fieldsToHeaders(msg('keep-alive, X-Hop'))).toEqual({ 'x-end': '2' });
  expect(fieldsToHeaders(msg('keep-alive'))).toEqual({ 'x-hop': '1', 'x-end': '2' });
  expect(fieldsToHeaders(msg(' x-end ,x-hop'))).toEqual({});
  expect(fieldsToHeaders(['connection', 'x-a', 'x-a', '1', 'connection', 'X-B', 'x-b', '2', 'x-c', '3'])).toEqual({ 'x-c': '3' });
  expect(fieldsToHeaders(msg(''))).toEqual({ 'x-hop': '1', 'x-end': '2' });
});

/**
 * The rules written out plainly (node's IncomingMessage for repeats, the hop-by-hop set,
 * Connection's list, MeshLengths), field by field into a null-prototype map: what
 * fieldsToHeaders must give, for heads with and without repeated names.
 */
function reference(fields: readonly string[], trailers: boolean, lengths: 'as-is' | 'from-mesh' | 'drop-mesh'): Record<string, string | string[]> {
  const hop = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'proxy-authenticate', 'proxy-authorization', 'http2-settings', 'host'];
  const single = ['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent'];
  const listed: string[] = [];
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === 'connection') listed.push(...fields[i + 1].split(',').map((t) => t.trim().toLowerCase()));
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < fields.length; i += 2) {
    let k = fields[i];
    let v = fields[i + 1];
    if (lengths === 'from-mesh' && k === 'content-length') continue;
    if (lengths !== 'as-is' && k === 'wren-content-length') {
      if (lengths === 'drop-mesh' || !/^\d{1,15}$/.test(v)) continue;
      k = 'content-length';
    }
    if (k === 'content-length' && v.includes(',')) v = v.split(',')[0].trim();
    if (hop.includes(k) || listed.includes(k) || (trailers && k === 'content-length')) continue;
    const prev = out[k];
    if (prev === undefined) out[k] = k === 'set-cookie' ? [v] : v;
    else if (Array.isArray(prev)) prev.push(v);
    else if (!single.includes(k)) out[k] = `${prev}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out;
}

test('every message gets the map the plain rules give: random heads with and without repeated names, up to 40 fields, in each mode', () => {
  // Seeded: the same heads every run.
  const random = seededRandom(0x2545f491);
  const rnd = (n: number): number => Math.floor(random() * n);
  const names = ['content-type', 'content-length', 'wren-content-length', 'set-cookie', 'cookie', 'x-a', 'x-b', 'etag', 'connection', 'keep-alive', 'te', 'host', 'constructor', '__proto__', 'toString', 'x-forwarded-for'];
  const values = ['1', '12', '12, 12', 'x-a', 'keep-alive, x-b', 'a=b', 'text/plain', '', 'constructor', '1e3'];
  let distinct = 0;
  for (let n = 0; n < 3000; n++) {
    const fields: string[] = [];
    const count = rnd(8) === 0 ? 17 + rnd(4) : rnd(9);
    for (let i = 0; i < count; i++) fields.push(rnd(5) === 0 ? `x-${rnd(40)}` : names[rnd(names.length)], values[rnd(values.length)]);
    const ks = fields.filter((_, i) => i % 2 === 0);
    if (new Set(ks).size === ks.length) distinct++;
    for (const lengths of ['as-is', 'from-mesh', 'drop-mesh'] as const) {
      for (const trailers of [false, true]) {
        const got = fieldsToHeaders(fields, trailers, lengths);
        const want = reference(fields, trailers, lengths);
        // Own fields only, in insertion order, and nothing on the prototype's names.
        expect(Object.entries(got)).toEqual(Object.entries(want));
        expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
      }
    }
  }
  // Heads with every name once and heads with repeats, many of each.
  expect(distinct).toBeGreaterThan(500);
  expect(distinct).toBeLessThan(2500);
});
