import { connect as h2connect, constants, createServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { decodeServing, encodeHealthCheckRequest, MeshProbes, type MeshedTarget } from './mesh-probes.js';

/**
 * MeshProbes against a real HTTP/2 server standing in for the peer sidecar's inbound
 * (the mTLS session itself is PeerPool's, covered end to end in test/health-check-mtls).
 */
type Handler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

let server: Http2Server;
let port: number;
let session: ClientHttp2Session;
let handler: Handler;
const seen: IncomingHttpHeaders[] = [];
const target: MeshedTarget = { address: '10.0.0.7', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/default/sa/web' };
const asked: [MeshedTarget, number][] = [];
const probes = new MeshProbes((t, ms) => {
  asked.push([t, ms]);
  return Promise.resolve(session);
});

beforeAll(async () => {
  server = createServer();
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.on('error', () => undefined); // a stream this side resets reports an error here
    handler(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
  session = h2connect(`http://127.0.0.1:${port}`);
});

afterAll(async () => {
  session.close();
  await new Promise((r) => server.close(r));
});

beforeEach(() => {
  seen.length = 0;
  asked.length = 0;
});

const never = () => new AbortController().signal;

/** A gRPC response: one message then trailers. */
function grpcReply(stream: ServerHttp2Stream, message: Buffer, grpcStatus = '0'): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': grpcStatus }));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  stream.end(frame);
}

describe('MeshProbes.http', () => {
  it('GETs the path on the target port as HTTP/1.1, marked as a health check; 2xx is healthy', async () => {
    handler = (s) => s.respond({ ':status': 204 }, { endStream: true });
    expect(await probes.http(target, '/healthz', 700, never())).toBe(true);
    expect(asked).toEqual([[target, 700]]);
    const h = seen[0];
    expect(h[':method']).toBe('GET');
    expect(h[':path']).toBe('/healthz');
    expect(h[':authority']).toBe('10.0.0.7:8080');
    expect(h['wren-target-port']).toBe('8080');
    expect(h['wren-orig-proto']).toBe('HTTP/1.1');
    expect(h['wren-health-check']).toBe('1');
    expect(h['user-agent']).toBe('wren-health-check');
  });

  it('a non-2xx (the app, or the peer refusing: 403, 502) is unhealthy', async () => {
    for (const status of [503, 403, 502, 301]) {
      handler = (s) => s.respond({ ':status': status }, { endStream: true });
      expect(await probes.http(target, '/', 700, never())).toBe(false);
    }
  });

  it('a reset stream is unhealthy; an abort (the timeout) cancels the stream', async () => {
    handler = (s) => s.close(constants.NGHTTP2_REFUSED_STREAM);
    expect(await probes.http(target, '/', 700, never())).toBe(false);
    let reset = 0;
    handler = (s) => s.once('close', () => (reset = s.rstCode));
    const abort = new AbortController();
    const p = probes.http(target, '/', 700, abort.signal);
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    expect(await p).toBe(false);
    await new Promise((r) => setTimeout(r, 20));
    expect(reset).toBe(constants.NGHTTP2_CANCEL);
  });

  it('no session (connect refused, wrong peer identity) is unhealthy', async () => {
    const failing = new MeshProbes(() => Promise.reject(new Error('PEER_IDENTITY')));
    expect(await failing.http(target, '/', 700, never())).toBe(false);
  });
});

describe('MeshProbes.tcp', () => {
  it('sends CONNECT to the target port; 200 (the peer reached the app) is healthy', async () => {
    handler = (s) => s.respond({ ':status': 200 });
    expect(await probes.tcp(target, 700, never())).toBe(true);
    expect(seen[0][':method']).toBe('CONNECT');
    expect(seen[0][':authority']).toBe('10.0.0.7:8080');
    expect(seen[0]['wren-target-port']).toBe('8080');
    expect(seen[0]['wren-health-check']).toBe('1');
    handler = (s) => s.respond({ ':status': 502 }, { endStream: true });
    expect(await probes.tcp(target, 700, never())).toBe(false);
  });
});

describe('MeshProbes.grpc', () => {
  it('POSTs grpc.health.v1.Health/Check with the service name; SERVING with grpc-status 0 is healthy', async () => {
    let body = Buffer.alloc(0);
    handler = (s) => {
      s.on('data', (d: Buffer) => (body = Buffer.concat([body, d])));
      s.on('end', () => grpcReply(s, Buffer.from([0x08, 0x01])));
    };
    expect(await probes.grpc(target, 'payments.v1.Payments', 700, never())).toBe(true);
    const h = seen[0];
    expect(h[':path']).toBe('/grpc.health.v1.Health/Check');
    expect(h['content-type']).toBe('application/grpc');
    expect(h['te']).toBe('trailers');
    expect(h['wren-orig-proto']).toBe('HTTP/2');
    expect(h['wren-health-check']).toBe('1');
    expect(body).toEqual(encodeHealthCheckRequest('payments.v1.Payments'));
  });

  it('NOT_SERVING, an error status, a trailers-only error or a missing message are unhealthy', async () => {
    const cases: Handler[] = [
      (s) => (s.resume(), grpcReply(s, Buffer.from([0x08, 0x02]))),
      (s) => (s.resume(), grpcReply(s, Buffer.from([0x08, 0x01]), '14')),
      (s) => (s.resume(), s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true })),
      (s) => (s.resume(), s.respond({ ':status': 200 }, { endStream: true })),
      (s) => (s.resume(), s.respond({ ':status': 403 }, { endStream: true })),
    ];
    for (const c of cases) {
      handler = c;
      expect(await probes.grpc(target, '', 700, never())).toBe(false);
    }
  });
});

describe('gRPC health wire format', () => {
  it('encodes HealthCheckRequest as one length-prefixed message', () => {
    expect(encodeHealthCheckRequest('')).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(encodeHealthCheckRequest('ab')).toEqual(Buffer.from([0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]));
    const long = encodeHealthCheckRequest('x'.repeat(200));
    expect([...long.subarray(0, 8)]).toEqual([0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
  });

  it('decodes SERVING only from a well-formed, uncompressed HealthCheckResponse', () => {
    const frame = (...bytes: number[]) => Buffer.from([0, 0, 0, 0, bytes.length, ...bytes]);
    expect(decodeServing(frame(0x08, 0x01))).toBe(true);
    // Unknown fields are skipped (a string field 2, then status).
    expect(decodeServing(frame(0x12, 0x01, 0x7a, 0x08, 0x01))).toBe(true);
    expect(decodeServing(frame(0x08, 0x02))).toBe(false); // NOT_SERVING
    expect(decodeServing(frame())).toBe(false); // UNKNOWN (default)
    expect(decodeServing(Buffer.from([1, 0, 0, 0, 2, 0x08, 0x01]))).toBe(false); // compressed flag
    expect(decodeServing(Buffer.from([0, 0, 0, 0, 3, 0x08, 0x01]))).toBe(false); // truncated
    expect(decodeServing(frame(0x08, 0x81))).toBe(false); // broken varint
  });
});
