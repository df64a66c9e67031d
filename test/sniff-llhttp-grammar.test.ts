import { createServer } from 'node:http';
import { connect } from 'node:net';
import { classifyPrefix } from '../proxy/net/detect-protocol.js';
import { parse } from './helpers/h1-collector.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Protocol detection against node's HTTP parser (llhttp), over generated request lines.
 *
 * Why: bytes the detector classifies opaque are spliced to the app unparsed, so every
 * header rule is skipped; if the app's parser (llhttp, for a Node app) still reads them
 * as a request, a caller's forged X-Forwarded-Client-Cert, wren-* or JWT claim header
 * reaches the app as the sidecar's. Three such shapes were found one by one (several
 * spaces, any NAME/x.y version: sniff-llhttp-differential.test.ts; then a lone CR before
 * the request line and an HTTP/0.9 line with no version). This test asks llhttp itself,
 * over a real socket, about every combination of the pieces those shapes are made of, and
 * holds Wren to: whatever llhttp parses as a request is classified HTTP at every prefix
 * (a client may send it a byte at a time), then parsed or refused with a 4xx by Wren's
 * codec (RFC 9112 sections 2.2, 2.3 and 3), and never reaches the app behind a
 * PERMISSIVE sidecar with its forged XFCC.
 */
const LEADS = ['', '\r\n', '\n', '\r', '\r\r', '\n\r', '\r\r\n', '\r\n\r', '\n\n', ' ', '\t', '\x00', '\r ', '\x0b'];
const METHODS = ['GET', 'PROPFIND', 'get'];
const SPACES = [' ', '  ', '\t'];
const TARGETS = ['/a', 'http://x/a?q'];
const VERSIONS = [' HTTP/1.1', '', ' ', '  HTTP/1.1', ' HTTP/2.0', ' HTTP/0.9', ' RTSP/1.0', ' http/1.1', ' HTTP/1', '\tHTTP/1.1', ' HTTP/1.1 '];
const EOLS = ['\r\n', '\n', '\r\r\n', '\r \n'];

const FORGED = 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin';

interface Case {
  id: number;
  line: string;
  wire: string;
}

/**
 * The request lines: every lead with every version and line end; every method, spacing and
 * target with every version and line end; every lead with every method and target. All
 * of them at once would be some 11,000 connections; these pairs are where the shapes found
 * so far interact.
 */
function generate(): Case[] {
  const lines = new Set<string>();
  for (const lead of LEADS) for (const v of VERSIONS) for (const eol of EOLS) lines.add(`${lead}GET /a${v}${eol}`);
  for (const m of METHODS) for (const sp of SPACES) for (const t of TARGETS) for (const v of VERSIONS) for (const eol of EOLS) lines.add(`${m}${sp}${t}${v}${eol}`);
  for (const lead of LEADS) for (const m of METHODS) for (const t of TARGETS) for (const v of ['', ' HTTP/1.1']) lines.add(`${lead}${m} ${t}${v}\r\n`);
  return [...lines].map((line, id) => ({ id, line, wire: `${line}Host: web\r\nX-Case: ${id}\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n` }));
}

/** Writes `wire` on a fresh connection to `port`; resolves with the reply once the peer closes (or after `ms`). */
function exchange(port: number, wire: string, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), ms);
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
    s.write(wire, 'latin1');
  });
}

/** Runs `f` over `items`, `width` at a time: the machine is shared, connections are cheap but not free. */
async function pool<T>(items: T[], width: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await f(items[next++]);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

/** A node:http app recording the X-Case and XFCC of every request it parsed. */
async function recordingApp(): Promise<{ port: number; seen: Map<number, string>; close(): Promise<void> }> {
  const seen = new Map<number, string>();
  const app = createServer((req, res) => {
    seen.set(Number(req.headers['x-case']), String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('ok');
  });
  const l = await listenOnLoopback(app);
  return { port: l.port, seen, close: l.close };
}

const pki = testPki();
const cases = generate();
let oracle: Awaited<ReturnType<typeof recordingApp>>;
let behind: Awaited<ReturnType<typeof recordingApp>>;
let permissive: Proxy;
/** The generated cases llhttp parsed as a request, found in beforeAll. */
let accepted: Case[] = [];

beforeAll(async () => {
  oracle = await recordingApp();
  behind = await recordingApp();
  permissive = await startProxy({
    pki, serviceAccount: 'perm', inboundOriginalDst: () => ({ address: '127.0.0.1', port: behind.port }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 300 } },
  });
  await pool(cases, 16, async (c) => void (await exchange(oracle.port, c.wire, 1000)));
  accepted = cases.filter((c) => oracle.seen.get(c.id)?.includes('sa/admin'));
}, 60_000);

afterAll(async () => {
  await permissive.close();
  await Promise.all([oracle.close(), behind.close()]);
});

test('the generated lines cover the shapes llhttp takes: lone CRs before the line, no version, a bare LF, several spaces', () => {
  const lines = new Set(accepted.map((c) => c.line));
  for (const shape of ['\rGET /a HTTP/1.1\r\n', '\n\rGET /a HTTP/1.1\r\n', '\r\rGET /a HTTP/1.1\r\n', 'GET /a\r\n', 'GET /a\n', 'GET  /a HTTP/2.0\r\n', '\r\n\rPROPFIND http://x/a?q\r\n']) {
    expect([shape, lines.has(shape)]).toEqual([shape, true]);
  }
  // ...and lines llhttp refuses, so the oracle is not taking everything.
  for (const shape of ['get /a HTTP/1.1\r\n', ' GET /a HTTP/1.1\r\n', 'GET /a\r\r\n', 'GET\t/a HTTP/1.1\r\n']) {
    expect([shape, lines.has(shape)]).toEqual([shape, false]);
  }
});

test('whatever llhttp parses as a request is classified HTTP/1.x at every prefix, never opaque', () => {
  const wrong: string[] = [];
  for (const c of accepted) {
    const buf = Buffer.from(c.wire, 'latin1');
    // The first answer that is not 'need-more' is final (peek.ts): it must be HTTP however the bytes are split.
    let first = 'need-more';
    for (let k = 1; k <= buf.length && first === 'need-more'; k++) first = classifyPrefix(buf.subarray(0, k));
    if (first !== 'http1') wrong.push(`${JSON.stringify(c.line)} -> ${first}`);
  }
  expect(wrong).toEqual([]);
});

test("whatever llhttp parses as a request, Wren's codec parses or refuses with a 4xx", () => {
  const wrong: string[] = [];
  for (const c of accepted) {
    const p = parse(c.wire);
    const status = p.error?.httpStatus ?? 0;
    if (p.messages.length === 0 && !(status >= 400 && status < 500)) wrong.push(`${JSON.stringify(c.line)} -> ${p.error?.reason ?? 'nothing'}`);
  }
  expect(wrong).toEqual([]);
});

test('none of them reaches the app behind a PERMISSIVE sidecar with the forged XFCC: 400 from the sidecar, or parsed and replaced', async () => {
  const replies = new Map<number, string>();
  await pool(accepted, 8, async (c) => void replies.set(c.id, await exchange(permissive.inboundPort, c.wire)));
  const wrong: string[] = [];
  for (const c of accepted) {
    const reply = replies.get(c.id) ?? '';
    const xfcc = behind.seen.get(c.id);
    const ok = xfcc === undefined ? /^HTTP\/1\.1 4\d\d /.test(reply) : !xfcc.includes('sa/admin') && /^HTTP\/1\.1 200 /.test(reply);
    if (!ok) wrong.push(`${JSON.stringify(c.line)} -> ${JSON.stringify(reply.slice(0, 40))} app saw ${JSON.stringify(xfcc)}`);
  }
  expect(wrong).toEqual([]);
  // The sidecar kept serving: a well-formed request after all of them is parsed and its XFCC removed.
  const id = cases.length;
  const reply = await exchange(permissive.inboundPort, `GET /a HTTP/1.1\r\nHost: web\r\nX-Case: ${id}\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);
  expect(reply).toMatch(/^HTTP\/1\.1 200 /);
  expect(behind.seen.get(id)).not.toContain('sa/admin');
}, 60_000);
