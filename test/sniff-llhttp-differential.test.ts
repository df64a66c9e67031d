import { connect as netConnect } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startSniffMesh, FORGED_XFCC, type SniffMesh } from './helpers/sniff-mesh.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (sniff-llhttp-differential).
 *
 * What an attacker does: an ordinary app in the mesh (no stolen certificate) calls the
 * `web` service and writes an HTTP/1.x request whose request-line Wren's protocol
 * detection does not recognise but node's HTTP parser (llhttp, what a Node app serves
 * with) accepts: `GET /whoami HTTP/2.0`, `GET /whoami RTSP/1.0`, `GET  /whoami HTTP/1.1`
 * (two spaces). It adds `X-Forwarded-Client-Cert: ...;URI=spiffe://.../sa/admin`.
 *
 * What happens: net/detect-protocol.ts classifies the bytes as opaque, so the outbound
 * sidecar tunnels them as TCP (no strip of mesh headers), and the web sidecar's sniff of
 * the CONNECT stream classifies them opaque again and splices them to the app unparsed.
 * The app's llhttp parses a request (HTTP/2.0 and RTSP/1.0 as version x.0, a doubled
 * space tolerated) and sees the forged XFCC: the caller is `admin` as far as the app
 * knows. An unauthenticated plaintext caller on a PERMISSIVE port gets the same path (tested).
 *
 * What should happen: whatever the app will parse as HTTP is parsed by the sidecar (or
 * refused), so identity headers are the sidecar's: docs/security.md and detect-protocol.ts
 * ("A method list let ... through as opaque, unparsed, so forged identity headers reached
 * the app"); Envoy's x-forwarded-client-cert SANITIZE_SET (Istio's default) never lets a
 * caller's XFCC through. Either the detector accepts what llhttp accepts and the codec then
 * refuses it with 400, or the tunnel to a non-opaque port refuses what is not HTTP/1.1.
 */
const pki = testPki();
const FORGED = FORGED_XFCC;
let server: Proxy, client: Proxy, permissive: Proxy, mesh: SniffMesh;
let appPort = 0;
let seen: readonly string[] = [];

beforeAll(async () => {
  mesh = await startSniffMesh(pki, '10.96.0.80');
  ({ server, client, permissive, appPort, seen } = mesh);
}, 20_000);

afterAll(() => mesh.close());

/** What the client app gets back for raw bytes sent to web's ClusterIP (redirected to its outbound sidecar). */
function raw(bytes: string, port = client.outboundPort): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (/xfcc=.*$/.test(out)) s.end();
    });
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), 4000);
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.write(bytes);
  });
}

test('sanity: a well-formed request through the mesh has its forged XFCC replaced', async () => {
  const out = await raw(`GET /whoami HTTP/1.1\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);
  expect(out).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
  expect(out).not.toContain('sa/admin');
});

test.each(['GET /whoami HTTP/2.0', 'GET /whoami RTSP/1.0', 'GET  /whoami HTTP/1.1'])('a mesh app cannot forge XFCC to web with the request-line %j', async (line) => {
  const before = seen.length;
  const out = await raw(`${line}\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);
  // Today: "HTTP/1.1 200 OK ... xfcc=By=...;URI=spiffe://cluster.local/ns/default/sa/admin".
  expect(out).not.toContain('URI=spiffe://cluster.local/ns/default/sa/admin');
  expect(seen.slice(before).some((x) => x.includes('sa/admin'))).toBe(false);
});

test('a mesh peer CONNECT to a non-opaque port cannot forge XFCC with `GET / HTTP/2.0`', async () => {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  const st = s.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${appPort}`, 'wren-target-port': String(appPort) });
  st.on('error', () => undefined);
  st.write(`GET /whoami HTTP/2.0\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\n\r\n`);
  let got = '';
  await new Promise<void>((r) => {
    const t = setTimeout(r, 4000);
    st.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (/xfcc=.*$/.test(got)) {
        clearTimeout(t);
        r();
      }
    });
    st.on('close', () => {
      clearTimeout(t);
      r();
    });
  });
  s.destroy();
  expect(got).not.toContain('URI=spiffe://cluster.local/ns/default/sa/admin');
});

test('an unauthenticated plaintext caller on a PERMISSIVE port cannot forge XFCC with `GET  / HTTP/1.1`', async () => {
  const out = await raw(`GET  /whoami HTTP/1.1\r\nHost: perm\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`, permissive.inboundPort);
  expect(out).not.toContain('URI=spiffe://cluster.local/ns/default/sa/admin');
});
