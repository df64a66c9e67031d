import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { testPki } from './helpers/pki.js';
import { startSniffMesh, FORGED_XFCC, type SniffMesh } from './helpers/sniff-mesh.js';
import { rawHead, statusLine } from './helpers/raw-http.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by an adversarial run (adv3 f1-sniff-cr-http09), after the shapes pinned by
 * sniff-llhttp-differential.test.ts were fixed.
 *
 * What an attacker does: writes a request whose first line node's parser (llhttp) reads
 * as a request but Wren's protocol detection did not: (a) lone CRs before the request
 * line (`\rGET /whoami HTTP/1.1`, `\r\r`, `\n\r`), which llhttp skips as it skips empty
 * lines; (b) an HTTP/0.9 line with no version (`GET /whoami\r\n`, or ended by a bare LF),
 * which llhttp takes with header fields after it. The request carries a forged
 * X-Forwarded-Client-Cert naming `admin` and a forged wren-peer.
 *
 * What happened: net/detect-protocol.ts classified the bytes opaque, so they were spliced
 * to the app unparsed: from a plaintext caller on a PERMISSIVE port, and from a mesh app
 * through its outbound (a detect port) and over mTLS into the callee's sniff of the CONNECT
 * stream. The app saw the forged identity.
 *
 * What should happen: they are classified HTTP and Wren's codec refuses them with 400
 * (RFC 9112 section 2.2: a lone CR is not a line ending; section 2.3: every request line
 * has a version, HTTP/0.9 is not spoken), the app sees nothing, and the sidecars keep
 * serving. test/sniff-llhttp-grammar.test.ts checks the detector against llhttp over
 * generated lines; this one takes the reported shapes through every listener.
 */
const pki = testPki();
const FORGED = FORGED_XFCC;
let server: Proxy, client: Proxy, permissive: Proxy, mesh: SniffMesh;
let appPort = 0;
let seen: readonly string[] = [];

beforeAll(async () => {
  mesh = await startSniffMesh(pki, '10.96.0.81');
  ({ server, client, permissive, appPort, seen } = mesh);
}, 20_000);

afterAll(() => mesh.close());

/** A mesh peer (a valid certificate, no sidecar) opens a CONNECT stream to web's app port and writes `bytes` in it. */
async function viaConnect(bytes: string): Promise<string> {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  const st = s.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${appPort}`, 'wren-target-port': String(appPort) });
  st.on('error', () => undefined);
  st.write(bytes);
  let got = '';
  await new Promise<void>((r) => {
    const t = setTimeout(r, 4000);
    const done = () => {
      clearTimeout(t);
      r();
    };
    st.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) done();
    });
    st.on('close', done);
  });
  s.destroy();
  return got;
}

/** A mesh peer speaks HTTP/1.1 over mTLS (ALPN http/1.1): no detection there, the codec reads the bytes first. */
async function viaMeshH1(bytes: string): Promise<string> {
  const m = pki.issue('default', 'mallory');
  const s = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  s.on('error', () => undefined);
  let got = '';
  await new Promise<void>((r) => {
    const t = setTimeout(r, 4000);
    s.on('secureConnect', () => s.write(bytes, 'latin1'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(t);
      r();
    });
  });
  s.destroy();
  return got;
}

const PATHS: [string, (bytes: string) => Promise<string>][] = [
  ['app -> outbound (detect port) -> mesh', (b) => rawHead(client.outboundPort, b)],
  ['plaintext caller -> PERMISSIVE inbound', (b) => rawHead(permissive.inboundPort, b)],
  ['mesh peer CONNECT stream -> inbound sniff', viaConnect],
  ['mesh peer HTTP/1.1 over mTLS -> inbound', viaMeshH1],
];

const SHAPES = [
  ['a lone CR before the request line', '\rGET /whoami HTTP/1.1\r\n'],
  ['CR CR before the request line', '\r\rGET /whoami HTTP/1.1\r\n'],
  ['LF CR before the request line', '\n\rGET /whoami HTTP/1.1\r\n'],
  ['CRLF then a lone CR before the request line', '\r\n\rGET /whoami HTTP/1.1\r\n'],
  ['an HTTP/0.9 line (no version) ended by CRLF', 'GET /whoami\r\n'],
  ['an HTTP/0.9 line (no version) ended by a bare LF', 'GET /whoami\n'],
];

describe.each(PATHS)('%s', (_path, send) => {
  test.each(SHAPES)('%s is refused with 400: the app never sees the forged XFCC or wren-peer', async (_shape, line) => {
    const before = seen.length;
    const out = await send(`${line}Host: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nwren-peer: forged\r\nConnection: close\r\n\r\n`);
    expect(statusLine(out)).toMatch(/^HTTP\/1\.1 400 /);
    expect(seen.slice(before)).toEqual([]);
  });

  test('after them the sidecars keep serving: a well-formed request gets through with its XFCC replaced', async () => {
    const before = seen.length;
    // wren-target-port and wren-orig-proto: what a peer sidecar sends over mTLS HTTP/1.1; the other paths strip them.
    const out = await send(`GET /whoami HTTP/1.1\r\nHost: web\r\nwren-target-port: ${appPort}\r\nwren-orig-proto: HTTP/1.1\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);
    expect(statusLine(out)).toBe('HTTP/1.1 200 OK');
    const now = seen.slice(before);
    expect(now).toHaveLength(1);
    expect(now[0]).not.toContain('sa/admin');
  });
});
