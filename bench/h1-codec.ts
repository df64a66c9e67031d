/**
 * HTTP/1.1 codec micro-benchmark (issue 12, lean data path): `npm run bench -- h1-codec`.
 *  1. Parse only: the same requests, one socket read each, through proxy/h1's H1Parser and
 *     through node's own llhttp binding (the HTTPParser node:http uses, without the
 *     IncomingMessage/ServerResponse machinery on top): ns per request.
 *  2. A server on loopback, in a child process so that only its CPU is counted: node:http
 *     (createServer + res.end) against a net server that parses with H1Parser and answers
 *     with responseHead + writeMessage. 16 keep-alive connections, one request at a time
 *     each (as wrk does), 100-byte responses: server CPU µs per request and requests/s.
 * One run on a shared machine: compare the ratios, not the absolute figures.
 */
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { H1Parser, type H1Handler } from '../proxy/h1/parser.js';
import type { H1Head } from '../proxy/h1/head.js';
import type { H1Error } from '../proxy/h1/h1-error.js';
import { CLOSE, responseHead, writeMessage } from '../proxy/h1/serialize.js';
import { median } from './interleave.js';

const REQUESTS = [
  'GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n', // wrk
  'GET /api/v1/items?id=42 HTTP/1.1\r\nHost: web.default.svc.cluster.local\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n', // curl
  'GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n' +
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nCookie: session=abcdef0123456789; theme=dark\r\n' +
    'X-Request-Id: 6f1c2a2e-5b7d-4a8e-9c3f-1e2d3c4b5a69\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n', // browser, mesh headers
  `POST /api/v1/items HTTP/1.1\r\nHost: web\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n${'x'.repeat(100)}`,
  // A gRPC call between the sidecars (the mux hop), as the outbound writes it: chunked, the mesh's fields.
  'POST /wren.test.Echo/Unary HTTP/1.1\r\nhost: echo:50051\r\nuser-agent: h2load nghttp2/1.52.0\r\ncontent-type: application/grpc\r\nte: trailers\r\n' +
    'traceparent: 00-15031b8d803211aa1961eb3186dc5e25-bcd3704862548727-00\r\nx-request-id: de1dcc2c-c107-48df-8552-346afe5e4114\r\n' +
    'x-forwarded-for: 127.0.0.1\r\ntransfer-encoding: chunked\r\nwren-target-port: 37097\r\nwren-orig-proto: HTTP/2\r\n' +
    'wren-peer: ;default;;;echo.default\r\nwren-content-length: 11\r\n\r\nb\r\n\0\0\0\0\x06\n\x04ping\r\n0\r\n\r\n',
];
const BODY = Buffer.alloc(100, 0x61);


class Counter implements H1Handler {
  ended = 0;
  fields = 0;
  onHead(h: H1Head): void {
    this.fields += h.fields.length;
  }
  onBody(): void {}
  onTrailers(): void {}
  onEnd(): void {
    this.ended++;
  }
  onUpgrade(): void {}
  onError(e: H1Error): void {
    throw e;
  }
}

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(b: Buffer): number | Error;
  [k: number]: unknown;
}

/** node's llhttp binding, as node:http drives it; null where this Node does not expose it. */
function llhttp(): { make(onDone: () => void): LlhttpParser } | null {
  try {
    const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: (new () => LlhttpParser) & Record<string, number> };
    return {
      make(onDone) {
        const p = new HTTPParser();
        p.initialize(HTTPParser.REQUEST, {}, 16 * 1024, 0);
        p[HTTPParser.kOnMessageBegin] = () => {};
        p[HTTPParser.kOnHeaders] = () => {};
        // node:http builds its IncomingMessage here from (versionMajor, versionMinor, headers, method, url, ...).
        p[HTTPParser.kOnHeadersComplete] = () => 0;
        p[HTTPParser.kOnBody] = () => {};
        p[HTTPParser.kOnMessageComplete] = onDone;
        p[HTTPParser.kOnExecute] = () => {};
        return p;
      },
    };
  } catch {
    return null;
  }
}

function parseOnly(reads: Buffer[], rounds: number): { codecNs: number; llhttpNs: number | null } {
  const n = reads.length;
  const c = new Counter();
  const ours = new H1Parser(c, false);
  const ll = llhttp();
  let done = 0;
  const theirs = ll?.make(() => done++) ?? null;
  const codec: number[] = [];
  const node: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) ours.execute(reads[i]);
    codec.push(Number(process.hrtime.bigint() - t) / n);
    if (theirs) {
      t = process.hrtime.bigint();
      for (let i = 0; i < n; i++) theirs.execute(reads[i]);
      node.push(Number(process.hrtime.bigint() - t) / n);
    }
  }
  if (c.ended !== n * rounds || (theirs && done !== n * rounds)) throw new Error(`parsed ${c.ended} / ${done} of ${n * rounds}`);
  // The first rounds warm the JIT up: the median of the later ones.
  return { codecNs: median(codec.slice(rounds / 2)), llhttpNs: theirs ? median(node.slice(rounds / 2)) : null };
}

/** The child: a server of one kind, reporting its CPU use when asked. */
function serve(kind: string): void {
  const answer = () => responseHead(200, { 'content-type': 'text/plain' }, BODY.length, 0);
  let server;
  if (kind === 'node') {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
      res.end(BODY);
    });
    server.keepAliveTimeout = 60_000;
  } else {
    server = createNetServer((sock: Socket) => {
      sock.setNoDelay(true);
      let keepAlive = true;
      const handler: H1Handler = {
        onHead: (h) => (keepAlive = h.keepAlive),
        onBody: () => {},
        onTrailers: () => {},
        onEnd: () => void writeMessage(sock, keepAlive ? answer() : responseHead(200, {}, BODY.length, CLOSE), BODY),
        onUpgrade: () => sock.destroy(),
        onError: (e) => sock.end(responseHead(e.httpStatus, {}, 0, CLOSE)),
      };
      const parser = new H1Parser(handler, false);
      sock.on('data', (d: Buffer) => parser.execute(d));
      sock.on('error', () => sock.destroy());
    });
  }
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
  let base = process.cpuUsage();
  process.on('message', (m: string) => {
    if (m === 'mark') base = process.cpuUsage();
    else if (m === 'usage') {
      const u = process.cpuUsage(base);
      process.send!({ cpuUs: u.user + u.system });
    }
  });
}

/** 16 connections, one request in flight each, `total` requests; responses read with H1Parser. */
async function load(port: number, total: number, conns = 16): Promise<number> {
  const req = Buffer.from(REQUESTS[1], 'latin1');
  let sent = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conns }, async () => {
      const sock = connect(port, '127.0.0.1');
      sock.setNoDelay(true);
      await once(sock, 'connect');
      await new Promise<void>((resolve, reject) => {
        const next = () => {
          if (sent >= total) {
            sock.destroy();
            return resolve();
          }
          sent++;
          sock.write(req);
        };
        const p = new H1Parser({ onHead() {}, onBody() {}, onTrailers() {}, onEnd: next, onUpgrade() {}, onError: reject }, true);
        sock.on('data', (d: Buffer) => p.execute(d));
        sock.on('error', reject);
        next();
      });
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

async function server(kind: string, total: number): Promise<{ cpuUsPerRequest: number; rps: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', kind], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const [{ port }] = (await once(child, 'message')) as [{ port: number }];
    await load(port, Math.min(5000, total)); // warm-up
    child.send('mark');
    const rps = await load(port, total);
    child.send('usage');
    const [{ cpuUs }] = (await once(child, 'message')) as [{ cpuUs: number }];
    return { cpuUsPerRequest: cpuUs / total, rps };
  } finally {
    child.kill();
  }
}

export async function runH1CodecBench(opts: { reads?: number; rounds?: number; requests?: number; runs?: number } = {}): Promise<Record<string, unknown>> {
  const reads = Array.from({ length: opts.reads ?? 4000 }, (_, i) => Buffer.from(REQUESTS[i % REQUESTS.length], 'latin1'));
  const parse = parseOnly(reads, opts.rounds ?? 40);
  const ratio = (p: { codecNs: number; llhttpNs: number | null }) => (p.llhttpNs ? ` (codec/llhttp ${(p.codecNs / p.llhttpNs).toFixed(2)})` : '');
  console.log(`parse only, ns per request (${REQUESTS.length} request shapes in turn, one read each): codec ${parse.codecNs.toFixed(0)}, node llhttp ${parse.llhttpNs?.toFixed(0) ?? 'n/a'}${ratio(parse)}`);
  // Each shape alone, as one connection's requests repeat (a client's, or the mesh hop's).
  const byShape = REQUESTS.map((r) => parseOnly(Array.from({ length: 1000 }, () => Buffer.from(r, 'latin1')), opts.rounds ?? 40));
  for (const [i, p] of byShape.entries()) console.log(`  shape ${i + 1} (${REQUESTS[i].length} bytes): codec ${p.codecNs.toFixed(0)}, node llhttp ${p.llhttpNs?.toFixed(0) ?? 'n/a'}${ratio(p)}`);
  const total = opts.requests ?? 40_000;
  const runs = opts.runs ?? 3;
  const rows: Record<string, { cpuUsPerRequest: number; rps: number }[]> = { node: [], codec: [] };
  for (let i = 0; i < runs; i++) for (const kind of ['node', 'codec']) rows[kind].push(await server(kind, total)); // interleaved
  const pick = (kind: string) => ({ cpuUsPerRequest: median(rows[kind].map((r) => r.cpuUsPerRequest)), rps: median(rows[kind].map((r) => r.rps)) });
  const node = pick('node');
  const codec = pick('codec');
  console.log(`server on loopback, ${total} requests over 16 keep-alive connections, median of ${runs}:`);
  console.log(`  node:http      ${node.cpuUsPerRequest.toFixed(1)} µs CPU/request, ${node.rps.toFixed(0)} req/s`);
  console.log(`  h1 codec       ${codec.cpuUsPerRequest.toFixed(1)} µs CPU/request, ${codec.rps.toFixed(0)} req/s (CPU ×${(codec.cpuUsPerRequest / node.cpuUsPerRequest).toFixed(2)} of node:http)`);
  return { parseNsPerRequest: parse, parseNsByShape: byShape, server: { node, codec, cpuRatio: codec.cpuUsPerRequest / node.cpuUsPerRequest } };
}

if (process.argv[2] === '--serve') serve(process.argv[3]);
else if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  runH1CodecBench().then(() => process.exit(0), (e) => {
    console.error(e);
    process.exit(1);
  });
}
