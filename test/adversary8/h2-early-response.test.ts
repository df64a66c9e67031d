import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, request, rstStream } from '../helpers/h2-frames.js';
import { until } from '../helpers/until.js';
import { bothMeshes, startH2Mesh } from './h2-mesh.js';

/**
 * A complete response before the request's end. HTTP/2 allows it (RFC 9113 section 8.1: a
 * server may answer before the request is complete, and the request goes on unless it
 * sends RST_STREAM); a gRPC server-streaming or bidirectional call that answers before the
 * client's half-close is one, so is an app that answers at once and keeps reading.
 *
 * On `h2` the upload went on to its end. What happened on `mux`: the HTTP/1.1 pool took
 * the response's end for the exchange's end and dropped the virtual connection, so the
 * rest of the upload never reached the app (its stream was reset half-read).
 */
const pki = testPki();
const meshes = bothMeshes(pki);
const sessions: ClientHttp2Session[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request whose body the test writes; resolves the response's end (its body) and its close. */
function upload(port: number, path: string): { req: ClientHttp2Stream; ended: Promise<string>; closed: Promise<number> } {
  const s = h2connect(`http://127.0.0.1:${port}`).on('error', () => undefined);
  sessions.push(s);
  const req = s.request({ ':method': 'POST', ':authority': 'app', ':path': path });
  req.on('error', () => undefined);
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  const ended = new Promise<string>((resolve) => req.on('end', () => resolve(Buffer.concat(parts).toString())));
  const closed = new Promise<number>((resolve) => req.on('close', () => resolve(req.rstCode ?? 0)));
  return { req, ended, closed };
}

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  beforeEach(() => {
    // Answers at once, whole, and reads the request to its end.
    mesh().handler = (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('early');
    };
  });

  test('the rest of an upload after a complete response reaches the app, to its end; the next request is served', async () => {
    const { req, ended, closed } = upload(mesh().client.outboundPort, '/early');
    req.write('first,');
    expect(await ended).toBe('early');
    // The response is complete; the request goes on.
    for (const part of ['second,', 'third,']) {
      await sleep(30);
      req.write(part);
    }
    req.end('last');
    expect(await closed).toBe(0);
    expect(await until(() => mesh().closed.some((c) => c.path === '/early'), 5000)).toBe(true);
    const seen = mesh().closed.find((c) => c.path === '/early')!;
    expect(seen.body.toString()).toBe('first,second,third,last');
    expect(seen.rstCode).toBe(0);
    expect(seen.aborted).toBe(false);
    // The virtual connection (or stream) is free again once both directions ended.
    const next = upload(mesh().client.outboundPort, '/next');
    next.req.end('x');
    expect(await next.ended).toBe('early');
    expect(await next.closed).toBe(0);
  });

  test('a caller that resets its stream in the middle of the rest of its upload: the app sees the reset, never a whole request', async () => {
    // Raw frames: node:http2's client sends END_STREAM before the RST_STREAM of close() or destroy().
    const sock = connect(mesh().client.outboundPort, '127.0.0.1');
    sock.on('error', () => undefined);
    let responseEnded!: () => void;
    const ended = new Promise<void>((r) => (responseEnded = r));
    const reader = new FrameReader((type, flags, id) => {
      if (id === 1 && (type === FRAME.DATA || type === FRAME.HEADERS) && (flags & FLAG.END_STREAM) !== 0) responseEnded();
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    sock.write(Buffer.concat([clientStart(), request(1, 'app', '/cancelled', 'POST', false), frame(FRAME.DATA, 0, 1, Buffer.from('first,'))]));
    await ended;
    await sleep(30);
    sock.write(frame(FRAME.DATA, 0, 1, Buffer.from('second,')));
    await sleep(30);
    sock.write(rstStream(1, 8 /* CANCEL */));
    expect(await until(() => mesh().closed.some((c) => c.path === '/cancelled'), 5000)).toBe(true);
    const seen = mesh().closed.find((c) => c.path === '/cancelled')!;
    // A reset, not a clean end ('aborted' is node's event for a reset while its response is open, not after).
    expect(seen.rstCode).toBe(8);
    sock.destroy();
    // The mesh goes on.
    const next = upload(mesh().client.outboundPort, '/after-cancel');
    next.req.end('x');
    expect(await next.ended).toBe('early');
  });
});

test('mux: the virtual connection of an answered call whose upload goes on is not reused before the upload ends (one stream per peer)', async () => {
  const mesh = await startH2Mesh(pki, 'mux', { client: { limits: { maxConcurrentStreams: 1 } } });
  try {
    mesh.handler = (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('early');
    };
    const first = upload(mesh.client.outboundPort, '/first');
    first.req.write('a,');
    expect(await first.ended).toBe('early');
    // The only virtual connection to the peer still carries the first upload: the second call waits for it.
    const second = upload(mesh.client.outboundPort, '/second');
    second.req.end('b');
    let answered = false;
    void second.ended.then(() => (answered = true));
    await sleep(200);
    expect(answered).toBe(false);
    first.req.end('z');
    expect(await second.ended).toBe('early');
    expect(await first.closed).toBe(0);
    expect(await until(() => mesh.closed.filter((c) => c.path === '/first' || c.path === '/second').length === 2, 5000)).toBe(true);
    expect(mesh.closed.find((c) => c.path === '/first')!.body.toString()).toBe('a,z');
    expect(mesh.closed.find((c) => c.path === '/second')!.body.toString()).toBe('b');
  } finally {
    await mesh.close();
  }
});
