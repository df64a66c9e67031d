/**
 * Fuzzing the codec with a fixed seed (reproducible in CI); `WREN_FUZZ_ITERATIONS=100000`
 * (and `WREN_FUZZ_SEED`) for a longer run. Properties, for requests and responses:
 *  - valid pipelined messages give exactly the generated messages, however the bytes are split;
 *  - random mutations of valid and invalid messages never make the parser throw or stall,
 *    give the same outcome however the bytes are split (a parser whose verdict depends on
 *    packet boundaries is one an attacker can desynchronise), and what was accepted,
 *    serialised again and sent on, is read by the next parser as exactly those messages;
 *  - the bytes the parser keeps between reads never exceed the head limit.
 */
import { seededRandom, type Random } from '../../common/clock.js';
import { Collector } from '../../test/helpers/h1-collector.js';
import { H1Parser } from './parser.js';
import type { H1Head } from './head.js';
import type { H1Limits } from './limits.js';
import { lastChunk, requestHead } from './serialize.js';

const ITERATIONS = Number(process.env.WREN_FUZZ_ITERATIONS ?? 400);
const SEED = Number(process.env.WREN_FUZZ_SEED ?? 20261202);
const LIMITS: H1Limits = { maxHeadBytes: 2048, maxHeaderCount: 24, maxChunkExtBytes: 64 };
/** The most a parser may hold between reads: a partial head line or chunk-size line. */
/** Long runs (WREN_FUZZ_ITERATIONS) get the time they need. */
const TIMEOUT = Math.max(30_000, ITERATIONS * 40);
const RETAIN_BOUND = Math.max(LIMITS.maxHeadBytes, LIMITS.maxChunkExtBytes + 64);

interface Msg {
  method: string;
  target: string;
  status: number;
  fields: string[];
  body: string;
  trailers: string[];
  upgrade: boolean;
}

const pick = <T>(r: Random, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Random, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const TCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
const VCHARS = TCHARS + ' \t"(),/:;<=>?@[\\]{}\xe9\xff\x80';
const RESERVED = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect', 'keep-alive', 'trailer', 'te']);
const str = (r: Random, chars: string, min: number, max: number) => Array.from({ length: int(r, min, max) }, () => chars[Math.floor(r() * chars.length)]).join('');

function fieldName(r: Random): string {
  for (;;) {
    const n = str(r, TCHARS, 1, 12);
    if (!RESERVED.has(n.toLowerCase())) return n;
  }
}
function fieldValue(r: Random): string {
  const v = str(r, VCHARS, 0, 20).replace(/^[ \t]+|[ \t]+$/g, '');
  return v;
}
/** Body bytes that look like HTTP on purpose (a desync would parse them as messages). */
function bodyBytes(r: Random): string {
  const parts = ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', '\r\n', '0\r\n\r\n', 'HTTP/1.1 200 OK\r\n', '\x00', 'abc'];
  let s = '';
  const n = int(r, 0, 4);
  for (let i = 0; i < n; i++) s += r() < 0.5 ? pick(r, parts) : String.fromCharCode(...Array.from({ length: int(r, 1, 40) }, () => int(r, 0, 255)));
  return s;
}

/** Random field lines on the wire (with optional OWS) and as the parser must report them. */
function fields(r: Random, n: number): { wire: string; parsed: string[] } {
  let wire = '';
  const parsed: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = fieldName(r);
    const value = fieldValue(r);
    wire += `${name}:${r() < 0.7 ? ' ' : r() < 0.5 ? '\t' : ''}${value}${r() < 0.2 ? ' \t' : ''}\r\n`;
    parsed.push(name.toLowerCase(), value);
  }
  return { wire, parsed };
}

/** A body as chunks with random sizes, hex case, leading zeros and extensions, plus trailers. */
function chunkedBody(r: Random, body: string): { wire: string; trailers: string[] } {
  let wire = '';
  let at = 0;
  while (at < body.length) {
    const n = Math.min(body.length - at, int(r, 1, 50));
    let size = n.toString(16);
    if (r() < 0.3) size = size.toUpperCase();
    if (r() < 0.2) size = '00' + size;
    const ext = r() < 0.3 ? `;${str(r, TCHARS, 1, 5)}${r() < 0.5 ? `=${str(r, TCHARS, 1, 5)}` : r() < 0.5 ? '="q \\" t"' : ''}` : '';
    wire += `${size}${ext}\r\n${body.slice(at, at + n)}\r\n`;
    at += n;
  }
  const t = fields(r, r() < 0.3 ? int(r, 1, 3) : 0);
  return { wire: `${wire}0\r\n${t.wire}\r\n`, trailers: t.parsed };
}

function genRequest(r: Random, last: boolean): { wire: string; msg: Msg } {
  const method = pick(r, ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
  const target = '/' + str(r, 'abc/?=&%-_.~09', 0, 20);
  const host = str(r, 'abcdefghij.-0123456789', 1, 12);
  const f = fields(r, int(r, 0, 6));
  const kind = method === 'GET' || method === 'HEAD' ? 0 : int(r, 0, 2);
  const body = kind === 0 ? '' : bodyBytes(r);
  let head = `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n${f.wire}`;
  const parsed = ['host', host, ...f.parsed];
  let wire: string;
  let trailers: string[] = [];
  if (kind === 2) {
    const c = chunkedBody(r, body);
    head += 'Transfer-Encoding: chunked\r\n';
    parsed.push('transfer-encoding', 'chunked');
    wire = head + '\r\n' + c.wire;
    trailers = c.trailers;
  } else {
    if (kind === 1) {
      head += `Content-Length: ${body.length}\r\n`;
      parsed.push('content-length', String(body.length));
    }
    wire = head + '\r\n' + body;
  }
  // The last request sometimes upgrades: what follows is tunnel data, never HTTP.
  const upgrade = last && kind === 0 && r() < 0.2;
  if (upgrade) {
    wire = wire.replace('\r\n\r\n', '\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n');
    parsed.push('connection', 'upgrade', 'upgrade', 'x');
  }
  return { wire, msg: { method, target, status: 0, fields: parsed, body, trailers, upgrade } };
}

function genResponse(r: Random): { wire: string; msg: Msg; method: string } {
  const status = pick(r, [200, 200, 201, 204, 304, 404, 500]);
  const method = status < 300 && r() < 0.2 ? 'HEAD' : 'GET';
  const f = fields(r, int(r, 0, 6));
  const noBody = method === 'HEAD' || status === 204 || status === 304;
  const kind = int(r, 1, 2);
  const body = noBody ? '' : bodyBytes(r);
  const interim = r() < 0.2 ? 'HTTP/1.1 100 Continue\r\n\r\n' : '';
  let head = `${interim}HTTP/1.1 ${status} ${str(r, 'abc ', 0, 8)}\r\n${f.wire}`;
  const parsed = [...f.parsed];
  let wire: string;
  let trailers: string[] = [];
  if (kind === 2) {
    head += 'Transfer-Encoding: chunked\r\n';
    parsed.push('transfer-encoding', 'chunked');
    if (noBody) wire = head + '\r\n';
    else {
      const c = chunkedBody(r, body);
      wire = head + '\r\n' + c.wire;
      trailers = c.trailers;
    }
  } else {
    const len = method === 'HEAD' ? int(r, 0, 99) : body.length;
    head += `Content-Length: ${len}\r\n`;
    parsed.push('content-length', String(len));
    wire = head + '\r\n' + body;
  }
  return { wire, msg: { method: '', target: '', status, fields: parsed, body, trailers, upgrade: false }, method };
}

interface Outcome {
  messages: Msg[];
  error: string | null;
  upgrade: string | null;
  /** Body of a message cut off by an error (concatenated), so that splits must agree on it too. */
  partial: string | null;
}

const toMsg = (h: H1Head, body: string, trailers: string[]): Msg => ({ method: h.method, target: h.target, status: h.status, fields: h.fields, body, trailers, upgrade: h.upgrade });

/** Feed `wire` cut at `cuts`; check the retention bound after every read; finish() at the end. */
function run(wire: Buffer, cuts: number[], responses: boolean, methods: string[]): Outcome {
  const c = new Collector();
  const p = new H1Parser(c, responses, LIMITS);
  let m = 0;
  if (responses) {
    p.setRequestMethod(methods[m++] ?? 'GET');
    c.onEndHook = () => p.setRequestMethod(methods[m++] ?? 'GET');
  }
  let from = 0;
  for (const to of [...cuts, wire.length]) {
    const n = p.execute(wire.subarray(from, to));
    if (n !== to - from) throw new Error(`the parser stopped at ${n} of ${to - from} bytes without a pause`);
    if (p.retainedBytes > RETAIN_BOUND) throw new Error(`the parser holds ${p.retainedBytes} bytes`);
    from = to;
  }
  p.finish();
  return {
    messages: c.messages.map((x) => toMsg(x.head, x.body, x.trailers)),
    error: c.error ? `${c.error.reason} ${c.error.code}` : null,
    upgrade: c.upgrade,
    partial: c.current ? c.current.body : null,
  };
}

function randomCuts(r: Random, len: number): number[] {
  if (len < 2) return [];
  const mode = r();
  const cuts = new Set<number>();
  if (mode < 0.15) for (let i = 1; i < len; i++) cuts.add(i); // every byte alone
  else {
    const k = int(r, 1, Math.min(20, len - 1));
    for (let i = 0; i < k; i++) cuts.add(int(r, 1, len - 1));
  }
  return [...cuts].sort((a, b) => a - b);
}

const SPECIAL = ['\r', '\n', '\r\n', ' ', '\t', '\x00', ':', ';', ',', '"', '0', 'f', 'g', 'a', '\x7f', '\x0b', '\xff', 'chunked', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 3\r\n', 'Content-Length: 0\r\n', 'Host: b\r\n', '\r\n\r\n', ' chunked', '\r\n ', 'HTTP/1.1', 'Connection: close\r\n'];

function mutate(r: Random, s: string): string {
  const n = int(r, 1, 4);
  for (let i = 0; i < n; i++) {
    const at = int(r, 0, s.length);
    const op = r();
    if (op < 0.35) s = s.slice(0, at) + pick(r, SPECIAL) + s.slice(at + 1); // replace a byte
    else if (op < 0.6) s = s.slice(0, at) + pick(r, SPECIAL) + s.slice(at); // insert
    else if (op < 0.8) s = s.slice(0, at) + s.slice(at + int(r, 1, 8)); // delete
    else {
      const len = int(r, 1, 30);
      s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at); // duplicate a range
    }
  }
  return s;
}

/** Serialise accepted requests again (as a proxy would forward them) and parse that. */
function forward(messages: Msg[]): Outcome {
  let out = '';
  for (const m of messages) {
    const rest = m.fields.filter((_, i) => i % 2 === 0).map((k, i) => [k, m.fields[2 * i + 1]]).filter(([k]) => k !== 'host' && k !== 'connection' && k !== 'upgrade').flat();
    const h = m.fields.indexOf('host');
    const host = h < 0 ? '' : m.fields[h + 1];
    const chunked = m.trailers.length > 0;
    out += requestHead(m.method, m.target, host, rest, chunked ? -1 : m.body.length);
    if (chunked) out += (m.body.length ? `${m.body.length.toString(16)}\r\n${m.body}\r\n` : '') + lastChunk(m.trailers, false).toString();
    else out += m.body;
  }
  return run(Buffer.from(out, 'latin1'), [], false, []);
}

/** A message without its framing fields, its Host apart (the forwarder writes its own, first). */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'host']);
const strip = (f: string[]) => {
  const out: string[] = [];
  for (let i = 0; i < f.length; i += 2) if (!FRAMING.has(f[i])) out.push(f[i], f[i + 1]);
  return out;
};
const hostOf = (f: string[]) => (f.indexOf('host') < 0 ? '' : f[f.indexOf('host') + 1]);
const core = (m: Msg) => ({ ...m, upgrade: false, host: hostOf(m.fields), fields: strip(m.fields), trailers: strip(m.trailers) });

describe(`H1Parser fuzz (seed ${SEED}, ${ITERATIONS} iterations)`, () => {
  it('valid pipelined requests parse to exactly the generated messages, however split', () => {
    const r = seededRandom(SEED);
    for (let it = 0; it < ITERATIONS; it++) {
      const n = int(r, 1, 5);
      const gen = Array.from({ length: n }, (_, i) => genRequest(r, i === n - 1));
      const tail = gen[n - 1].msg.upgrade ? '\x81\x00GET / HTTP/1.1\r\n' : '';
      const wire = Buffer.from(gen.map((g) => g.wire).join('') + tail, 'latin1');
      const whole = run(wire, [], false, []);
      expect(whole).toEqual({ messages: gen.map((g) => g.msg), error: null, upgrade: tail ? tail : null, partial: null });
      const split = run(wire, randomCuts(r, wire.length), false, []);
      expect(split).toEqual(whole);
    }
  }, TIMEOUT);

  it('valid pipelined responses (with HEAD, 204, 304, 1xx) parse to exactly the generated messages, however split', () => {
    const r = seededRandom(SEED + 1);
    for (let it = 0; it < ITERATIONS; it++) {
      const gen = Array.from({ length: int(r, 1, 4) }, () => genResponse(r));
      const wire = Buffer.from(gen.map((g) => g.wire).join(''), 'latin1');
      const methods = gen.map((g) => g.method);
      const whole = run(wire, [], true, methods);
      expect(whole).toEqual({ messages: gen.map((g) => g.msg), error: null, upgrade: null, partial: null });
      expect(run(wire, randomCuts(r, wire.length), true, methods)).toEqual(whole);
    }
  }, TIMEOUT);

  it('mutated requests: no throw, the same verdict however split, and what was accepted forwards as exactly itself', () => {
    const r = seededRandom(SEED + 2);
    let refused = 0;
    for (let it = 0; it < ITERATIONS * 2; it++) {
      const gen = Array.from({ length: int(r, 1, 3) }, () => genRequest(r, false));
      const wire = Buffer.from(mutate(r, gen.map((g) => g.wire).join('')), 'latin1');
      const whole = run(wire, [], false, []);
      for (let k = 0; k < 2; k++) expect(run(wire, randomCuts(r, wire.length), false, [])).toEqual(whole);
      if (whole.error) refused++;
      const accepted = whole.messages.filter((m) => !m.upgrade);
      const again = forward(accepted);
      expect(again.error).toBeNull();
      expect(again.messages.map(core)).toEqual(accepted.map(core));
    }
    // The mutations do hit the refusal paths (the check is not vacuous).
    expect(refused).toBeGreaterThan(ITERATIONS / 2);
  }, TIMEOUT);

  it('mutated responses: no throw and the same verdict however split', () => {
    const r = seededRandom(SEED + 3);
    for (let it = 0; it < ITERATIONS * 2; it++) {
      const gen = Array.from({ length: int(r, 1, 3) }, () => genResponse(r));
      const wire = Buffer.from(mutate(r, gen.map((g) => g.wire).join('')), 'latin1');
      const methods = gen.map((g) => g.method);
      const whole = run(wire, [], true, methods);
      expect(run(wire, randomCuts(r, wire.length), true, methods)).toEqual(whole);
    }
  }, TIMEOUT);

  it('random bytes never make it throw or hold more than the bound', () => {
    const r = seededRandom(SEED + 4);
    for (let it = 0; it < ITERATIONS; it++) {
      const wire = Buffer.from(Array.from({ length: int(r, 0, 3000) }, () => (r() < 0.5 ? int(r, 0, 255) : pick(r, [10, 13, 32, 58, 48, 65]))));
      const prefix = Buffer.from(r() < 0.5 ? 'POST / HTTP/1.1\r\nHost: a\r\n' : 'HTTP/1.1 200 OK\r\n', 'latin1');
      const all = Buffer.concat([prefix, wire]);
      for (const responses of [false, true]) expect(run(all, randomCuts(r, all.length), responses, [])).toEqual(run(all, [], responses, []));
    }
  }, TIMEOUT);

  it('endless streams keep memory bounded: they end in an error at the limit, or hold nothing', () => {
    const endless = (responses: boolean, start: string, unit: string, reps: number) => {
      const c = new Collector();
      const p = new H1Parser(c, responses, LIMITS);
      p.execute(Buffer.from(start, 'latin1'));
      const piece = Buffer.from(unit.repeat(64), 'latin1');
      let max = 0;
      for (let i = 0; i < reps && !c.error; i++) {
        p.execute(piece);
        max = Math.max(max, p.retainedBytes);
      }
      return { error: c.error?.reason ?? null, max, messages: c.messages.length };
    };
    const big = 1000; // × 64 units a read: far past every limit
    expect(endless(false, 'GET / HTTP/1.1\r\nHost: a\r\nX: ', 'a', big)).toMatchObject({ error: 'head-too-large' });
    expect(endless(false, 'GET / HTTP/1.1\r\nHost: a\r\n', 'X: 1\r\n', big)).toMatchObject({ error: 'too-many-fields' });
    expect(endless(false, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1', ';a', big)).toMatchObject({ error: 'chunk-ext-too-long' });
    expect(endless(false, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n', 'T: 1\r\n', big)).toMatchObject({ error: 'trailers-too-large' });
    // Empty lines between requests and endless 1xx responses are read and dropped.
    expect(endless(false, '', '\r\n', big)).toEqual({ error: null, max: 0, messages: 0 });
    expect(endless(true, '', 'HTTP/1.1 100 Continue\r\n\r\n', big / 10)).toEqual({ error: null, max: 0, messages: 0 });
    // Endless tiny chunks stream through with nothing held.
    expect(endless(false, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', '1\r\nx\r\n', big)).toEqual({ error: null, max: 0, messages: 0 });
    for (const [start, unit] of [['GET / HTTP/1.1\r\nHost: a\r\nX: ', 'a'], ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1', ';a']]) {
      expect(endless(false, start, unit, big).max).toBeLessThanOrEqual(RETAIN_BOUND);
    }
  }, TIMEOUT);

  it('gives the same messages to a head split at every offset (the partial-line path)', () => {
    const wire = Buffer.from(requestHead('POST', '/x', 'h', { 'x-a': 'v'.repeat(100) }, -1) + '5;e=1\r\nhello\r\n0\r\nt: 1\r\n\r\n', 'latin1');
    const whole = run(wire, [], false, []);
    for (let i = 1; i < wire.length; i++) expect(run(wire, [i], false, [])).toEqual(whole);
    expect(whole.messages[0].body).toBe('hello');
  }, TIMEOUT);
});
