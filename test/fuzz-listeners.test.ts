import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { request as httpRequest } from 'node:http';
import { seededRandom, type Random } from '../common/clock.js';
import { testPki } from './helpers/pki.js';
import { fakeApp } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { clientStart, frame, request } from './helpers/h2-frames.js';

/**
 * Issue 11 "Also": random and mutated HTTP/1.1 requests and HTTP/2 frame sequences
 * against the outbound listener and the mTLS inbound, and mutated or random TLS records
 * against the inbound's TLS port: no crash, no hang, and a normal
 * request succeeds after every batch. Bounded in CI (fixed seed and count); longer with
 * WREN_FUZZ_COUNT=<n> (and WREN_FUZZ_SEED=<s> to explore other inputs).
 */
const SEED = Number(process.env.WREN_FUZZ_SEED ?? 11);
const COUNT = Number(process.env.WREN_FUZZ_COUNT ?? 60);
const BATCH = 20;
const pki = testPki();
const HOST = 'web.default.svc.cluster.local';
let client: Proxy, server: Proxy, close: () => Promise<void>;

beforeAll(async () => {
  ({ client, server, close } = await startPairFor(pki, await fakeApp('web')));
}, 20_000);

afterAll(() => close());

const pick = <T>(r: Random, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const bytes = (r: Random, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));

const H1_SEEDS = [
  `GET /echo HTTP/1.1\r\nhost: ${HOST}\r\n\r\n`,
  `POST /echo HTTP/1.1\r\nhost: ${HOST}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
  `POST /echo HTTP/1.1\r\nhost: ${HOST}\r\ncontent-length: 5\r\n\r\nhello`,
];

/** A mutated HTTP/1.1 request: byte flips, injected CR/LF/NUL/colon, truncation or duplication. */
function h1Input(r: Random): Buffer {
  const b = Buffer.from(pick(r, H1_SEEDS), 'latin1');
  const out = [...b];
  const edits = 1 + Math.floor(r() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(r() * out.length);
    switch (Math.floor(r() * 5)) {
      case 0: out[at] = Math.floor(r() * 256); break;
      case 1: out.splice(at, 0, pick(r, [13, 10, 0, 58, 32, 9])); break;
      case 2: out.splice(at); break;
      case 3: out.splice(at, 0, ...out.slice(0, Math.min(out.length, 40))); break;
      default: out.splice(at, 1);
    }
  }
  return Buffer.from(out);
}

/** An HTTP/2 connection start followed by random frames, some of them well-formed requests. */
function h2Input(r: Random): Buffer {
  const parts = [clientStart()];
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const id = r() < 0.2 ? 0 : 1 + 2 * Math.floor(r() * 4);
    if (r() < 0.3) parts.push(request(id || 1, HOST, '/echo', pick(r, ['GET', 'POST']), r() < 0.5));
    else parts.push(frame(Math.floor(r() * 11), Math.floor(r() * 256), id, bytes(r, Math.floor(r() * 40))));
  }
  const all = Buffer.concat(parts);
  return r() < 0.2 ? all.subarray(0, Math.floor(r() * all.length)) : all;
}

/** The first flight of a real mTLS client (a ClientHello in one record), captured once. */
function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sink = createNetServer((sock) => {
      sock.once('data', (d: Buffer) => {
        sock.destroy();
        sink.close();
        resolve(d);
      });
    });
    sink.listen(0, '127.0.0.1', () => {
      const c = tlsConnect({ host: '127.0.0.1', port: (sink.address() as AddressInfo).port, ALPNProtocols: ['h2'], servername: 'fuzz' });
      c.on('error', () => undefined);
    });
    sink.on('error', reject);
  });
}

/**
 * TLS records for the inbound's TLS port: a real ClientHello mutated (byte flips, cuts,
 * duplicated records, lengths that lie), or records of random type, version and length.
 */
function tlsInput(r: Random, hello: Buffer): Buffer {
  if (r() < 0.3) {
    const n = 1 + Math.floor(r() * 3);
    const recs: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const body = bytes(r, Math.floor(r() * 64));
      const head = Buffer.from([pick(r, [20, 21, 22, 23, 24, Math.floor(r() * 256)]), 3, pick(r, [1, 3, 4, Math.floor(r() * 256)]), 0, 0]);
      head.writeUInt16BE(r() < 0.7 ? body.length : Math.floor(r() * 65536), 3);
      recs.push(head, body);
    }
    return Buffer.concat(recs);
  }
  const out = [...hello];
  const edits = 1 + Math.floor(r() * 6);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(r() * out.length);
    switch (Math.floor(r() * 4)) {
      case 0: out[at] = Math.floor(r() * 256); break;
      case 1: out.splice(at); break;
      case 2: out.push(...out.slice(0, Math.min(out.length, 300))); break;
      default: out[Math.floor(r() * Math.min(out.length, 9))] = Math.floor(r() * 256); // record/handshake headers
    }
  }
  return Buffer.from(out);
}

/** Sends the input, then waits for the server to close or at most 300 ms. */
function send(open: () => Socket, input: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = open();
    s.on('error', () => undefined);
    const done = () => {
      s.destroy();
      resolve();
    };
    const t = setTimeout(done, 300);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
    s.once('encrypted' in s ? 'secureConnect' : 'connect', () => s.write(input));
  });
}

function normalRequest(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/echo', headers: { host: HOST } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.setTimeout(5000, () => req.destroy(new Error('normal request hung')));
    req.on('error', reject);
    req.end();
  });
}

test(`fuzzed HTTP/1.1, HTTP/2 and TLS input on both listeners (seed ${SEED}, ${COUNT} inputs)`, async () => {
  const r = seededRandom(SEED);
  const hello = await captureClientHello();
  expect(hello[0]).toBe(22); // a TLS handshake record
  const rawInbound = () => netConnect({ host: '127.0.0.1', port: server.inboundPort });
  const rssBefore = process.memoryUsage().rss;
  const m = pki.issue('default', 'fuzzer');
  const outbound = () => netConnect({ host: '127.0.0.1', port: client.outboundPort });
  const inbound = () => tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  for (let done = 0; done < COUNT; ) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < BATCH && done < COUNT; i++, done++) {
      const kind = Math.floor(r() * 4);
      if (kind === 0) batch.push(send(outbound, h1Input(r)));
      else if (kind === 1) batch.push(send(outbound, h2Input(r)));
      else if (kind === 2) batch.push(send(inbound, h2Input(r)));
      else batch.push(send(rawInbound, tlsInput(r, hello)));
    }
    await Promise.all(batch);
    expect(await normalRequest()).toBe(200);
  }
  // Both sidecars run in this process: nothing the inputs left behind adds up.
  expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 << 20);
}, 120_000);
