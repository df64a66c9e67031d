import { connect as h2connect } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, headerBlock } from './helpers/h2-frames.js';
import { HpackDecoder } from '../proxy/h2/hpack-decoder.js';

/**
 * Header fields a codec must not pass on, over HTTP/2 (found by an adversarial run, adv8):
 * an app's response trailers or head with a control character, CR LF or a name that is no
 * token, and a client's request trailers with such a name. They used to reach a writer that
 * throws (node:http2's respond/sendTrailers, the HTTP/1.1 serialiser) inside an event
 * listener, and the sidecar process exited. Real `wren proxy` processes, a raw frame-level
 * h2c app, real clients.
 */
const pki = testPki();
let dir: string;
let app: Server;
let appPort = 0;

/** A raw h2c app: by :path, a response whose head or (late) trailers carry a bad field; anything else 200 "ok". */
function rawApp(s: Socket): void {
  const decoder = new HpackDecoder();
  const reader = new FrameReader((type, flags, id, payload) => {
    if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) s.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
    if (type !== FRAME.HEADERS) return;
    const f = { id };
    const fields = decoder.decode(payload) as string[];
    const path = fields[fields.indexOf(':path') + 1];
    const status = headerBlock([[':status', '200']]);
    const late = (bad: [string, string]) => {
      s.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, f.id, status), frame(FRAME.DATA, 0, f.id, Buffer.from('hello\n'))]));
      setTimeout(() => s.writable && s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, f.id, headerBlock([bad]))), 100);
    };
    if (path === '/trailer-ctl') late(['x-bad', 'a\x01b']);
    else if (path === '/trailer-crlf') late(['x-bad', 'a\r\nx-injected: 1']);
    else if (path === '/trailer-name') late(['bad name', 'v']);
    else if (path === '/head-name') s.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, f.id, headerBlock([[':status', '200'], ['bad name', 'v']])), frame(FRAME.DATA, FLAG.END_STREAM, f.id, Buffer.from('ok\n'))]));
    else if (path === '/head-ctl') s.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, f.id, headerBlock([[':status', '200'], ['x-bad', 'a\x01b']])), frame(FRAME.DATA, FLAG.END_STREAM, f.id, Buffer.from('ok\n'))]));
    else s.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, f.id, status), frame(FRAME.DATA, FLAG.END_STREAM, f.id, Buffer.from('ok\n'))]));
  });
  let preface = false;
  s.on('error', () => undefined);
  s.write(frame(FRAME.SETTINGS, 0, 0));
  s.on('data', (d: Buffer) => {
    if (!preface) {
      preface = true;
      d = d.subarray(24);
    }
    reader.push(d);
  });
}

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-h2-bad-fields-'));
  app = createServer(rawApp);
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});
afterAll(async () => {
  app.close();
  await rm(dir, { recursive: true, force: true });
});

/** A web sidecar in front of the app and a client sidecar whose `web:80` (http2) is it; `unmeshed`: the app straight, no web sidecar. */
async function pair(name: string, meshHttp2: 'mux' | 'h2', unmeshed = false): Promise<{ web: ProxyProcess | null; client: ProxyProcess }> {
  const web = unmeshed ? null : await startProxyProcess(pki, dir, `${name}-web`);
  const endpoint = web ? { address: '127.0.0.1', port: appPort, proxyPort: web.inboundPort, identity: web.spiffeId } : { address: '127.0.0.1', port: appPort };
  const client = await startProxyProcess(pki, dir, `${name}-client`, {
    protocol: { meshHttp2 },
    mesh: { services: [{ name: 'web', namespace: 'default', ports: [{ port: 80, protocol: 'http2', endpoints: [endpoint] }] }] },
  });
  return { web, client };
}

/** One h2c GET through the client sidecar: the status (0: the stream failed) and the trailers it got. */
function get(port: number, path: string): Promise<{ status: number; trailers?: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const c = h2connect(`http://127.0.0.1:${port}`);
    c.on('error', () => resolve({ status: 0 }));
    const r = c.request({ ':path': path, ':authority': 'web' });
    let status = 0;
    let trailers: Record<string, unknown> | undefined;
    r.on('response', (h) => (status = Number(h[':status'])));
    r.on('trailers', (t) => (trailers = t));
    r.resume();
    r.on('end', () => {
      c.close();
      resolve({ status, trailers });
    });
    r.on('error', () => {
      c.destroy();
      resolve({ status: 0 });
    });
  });
}

/** A raw h2c client on `port`: the connection start, then `frames`; the frames it got once one of `untilTypes` came for stream 1 (or after 5 s). */
async function rawExchange(port: number, frames: readonly Buffer[], untilTypes: readonly number[]): Promise<{ type: number; id: number }[]> {
  const got: { type: number; id: number }[] = [];
  const s = netConnect(port, '127.0.0.1');
  const reader = new FrameReader((type, _flags, id) => got.push({ type, id }));
  s.on('data', (d: Buffer) => reader.push(d));
  s.on('error', () => undefined);
  s.write(Buffer.concat([clientStart(), ...frames]));
  const end = Date.now() + 5000;
  while (!got.some((f) => untilTypes.includes(f.type) && f.id === 1) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  s.destroy();
  return got;
}

const running = async (p: ProxyProcess | null): Promise<boolean> =>
  p === null || (await Promise.race([p.exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 300))]));
/** Both still running 300 ms on (watched side by side: one 300 ms wait, not one per process). */
const bothRunning = async (a: ProxyProcess | null, b: ProxyProcess): Promise<[boolean, boolean]> => Promise.all([running(a), running(b)]);

describe.each(['mux', 'h2'] as const)('between the sidecars: %s', (meshHttp2) => {
  // One pair of sidecar processes for the five answers (starting two processes per test was
  // most of this file's 32 s in CI): each answer must leave both serving, which every test
  // checks after its own call, so a sidecar that a bad field broke fails that test (and the
  // ones after it), as a crash would have before.
  let web: ProxyProcess | null = null;
  let client: ProxyProcess;
  beforeAll(async () => {
    ({ web, client } = await pair(`${meshHttp2}-answers`, meshHttp2));
  });
  afterAll(async () => {
    await Promise.all([client?.close(), web?.close()]);
  });

  test.each(['/trailer-ctl', '/trailer-crlf', '/trailer-name', '/head-name', '/head-ctl'])('an app answering %s: the call fails cleanly, no bad field reaches the client, both sidecars keep serving', async (path) => {
    const bad = await get(client.outboundPort, path);
    // Refused where it arrived (a stream error on the app's session): a failed call, or a
    // 502; never the field itself.
    expect(bad.trailers?.['x-bad']).toBeUndefined();
    expect(bad.trailers?.['bad name']).toBeUndefined();
    expect(bad.status === 0 || bad.status === 502).toBe(true);
    expect(await bothRunning(web, client)).toEqual([true, true]);
    expect(await get(client.outboundPort, '/')).toMatchObject({ status: 200 });
  });
});

test.each([['an unmeshed endpoint', 'mux', true], ['a meshed endpoint over h2', 'h2', false]] as const)('request trailers with a name that is no token, to %s: the stream is reset, the outbound keeps serving', async (_what, meshHttp2, unmeshed) => {
  const { web, client } = await pair(`req-trailer-${meshHttp2}-${unmeshed}`, meshHttp2, unmeshed);
  try {
    const head = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'web']]);
    const frames = await rawExchange(client.outboundPort, [frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, head), frame(FRAME.DATA, 0, 1, Buffer.from('body')), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([['bad name', 'v']]))], [FRAME.RST_STREAM]);
    expect(frames.some((f) => f.type === FRAME.RST_STREAM && f.id === 1)).toBe(true);
    expect(await running(client)).toBe(true);
    expect(await get(client.outboundPort, '/')).toMatchObject({ status: 200 });
  } finally {
    await Promise.all([client.close(), web?.close()]);
  }
});

test('a request field value with a control character (node:http2 serves it) is refused where a writer would throw, not by a crash', async () => {
  const { web, client } = await pair('req-ctl', 'mux');
  try {
    const head = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'web'], ['x-a', 'a\x01b']]);
    const frames = await rawExchange(client.outboundPort, [frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, head)], [FRAME.HEADERS, FRAME.RST_STREAM]);
    expect(frames.some((f) => (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM) && f.id === 1)).toBe(true);
    expect(await bothRunning(web, client)).toEqual([true, true]);
    expect(await get(client.outboundPort, '/')).toMatchObject({ status: 200 });
  } finally {
    await Promise.all([client.close(), web?.close()]);
  }
});
