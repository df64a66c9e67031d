import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { startProxy } from '../helpers/proxy.js';
import { testPki } from '../helpers/pki.js';
import { scrape } from '../helpers/admin-metric.js';
import { until } from '../helpers/until.js';
import { FLAG, FRAME, clientStart, frame, headerBlock } from '../helpers/h2-frames.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * HTTP/2 floods on the listeners whose server is node:http2. nghttp2 and node end such a
 * session themselves (an 'error' on the session and a GOAWAY), and Wren counted nothing,
 * where the frame-level server counts each flood in wren_limit_exceeded_total{limit}: the
 * same flood was visible on one listener and not on the other. Now counted under the same
 * limits on every listener.
 */
const pki = testPki();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function limit(p: Proxy, direction: string, name: string): Promise<number> {
  return (await scrape(p, 'wren_limit_exceeded_total')).find((s) => s.labels['direction'] === direction && s.labels['limit'] === name)?.value ?? 0;
}

const head = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], [':authority', 'web']]);

/** What each flood sends after the connection's start; `read`: whether the client reads what comes back. */
const floods: Record<string, { frames: () => Buffer[]; read: boolean; limit: string }> = {
  'empty DATA frames in a row (CVE-2019-9518)': {
    frames: () => [frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, head), ...Array<Buffer>(1200).fill(frame(FRAME.DATA, 0, 1))],
    read: true,
    limit: 'h2-empty-frames-flood',
  },
  'a header block in empty CONTINUATION frames (CVE-2024-27316)': {
    frames: () => [frame(FRAME.HEADERS, 0, 1, head), ...Array<Buffer>(20_000).fill(frame(FRAME.CONTINUATION, 0, 1))],
    read: true,
    limit: 'h2-continuation-flood',
  },
  'PINGs from a client that never reads the ACKs (CVE-2019-9512)': {
    frames: () => Array<Buffer>(200_000).fill(frame(FRAME.PING, 0, 0, Buffer.alloc(8))),
    read: false,
    limit: 'h2-unread-control-frames',
  },
};

/** Sends the flood in pieces (as a client writes it) and resolves when the connection is closed. */
async function flood(sock: Socket, f: { frames: () => Buffer[]; read: boolean }): Promise<void> {
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  if (!f.read) sock.pause();
  else sock.resume();
  const all = [clientStart(), ...f.frames()];
  for (let i = 0; i < all.length && !sock.destroyed; i += 10_000) {
    await new Promise<void>((r) => sock.write(Buffer.concat(all.slice(i, i + 10_000)), () => r()));
    await sleep(5);
  }
  // A client that does not read has its socket resumed once the flood is out, so the close can arrive.
  if (!f.read) setTimeout(() => sock.resume(), 200);
  await closed;
}

describe.each(['node', 'frames'])('the outbound, outboundHttp2 %s', (outboundHttp2) => {
  let p: Proxy;
  beforeAll(async () => {
    p = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2 } } });
  });
  afterAll(() => p.close());

  test.each(Object.keys(floods))('%s: the connection is closed and the flood counted', async (name) => {
    const f = floods[name];
    const before = await limit(p, 'outbound', f.limit);
    await flood(netConnect(p.outboundPort, '127.0.0.1'), f);
    expect(await until(async () => (await limit(p, 'outbound', f.limit)) === before + 1, 3000)).toBe(true);
  });
});

/**
 * A peer sidecar's floods on the mTLS inbound. (Its PINGs unread are not among them: over
 * TLS node:http2 stops reading the connection while its answers wait, so that flood holds
 * its own connection still instead of being one.)
 */
test.each(Object.keys(floods).slice(0, 2))('the mTLS inbound (node:http2), a peer sending %s: counted inbound', async (name) => {
  const f = floods[name];
  const p = await startProxy({ pki, serviceAccount: 'web' });
  try {
    const cert = pki.issue('default', 'client');
    const sock = tlsConnect({ host: '127.0.0.1', port: p.inboundPort, key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    await new Promise((r) => sock.once('secureConnect', r));
    const before = await limit(p, 'inbound', f.limit);
    await flood(sock, f);
    expect(await until(async () => (await limit(p, 'inbound', f.limit)) === before + 1, 3000)).toBe(true);
  } finally {
    await p.close();
  }
});
