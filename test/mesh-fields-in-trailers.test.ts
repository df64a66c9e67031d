import { createServer as createH1Server, request as h1request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startPair } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (mesh-headers-in-trailers).
 *
 * What an attacker does: a workload in the mesh (identity `client`) sends a request with
 * a body and puts the mesh's own fields in the request TRAILERS instead of the header
 * section: `x-forwarded-client-cert: By=...;URI=spiffe://.../sa/admin`, `wren-peer`,
 * `wren-health-check`. Over HTTP/2 (or HTTP/1.1 chunked trailers).
 *
 * What happens: the outbound's stripMeshHeaders and the inbound's clientIdentity only
 * clean `req.headers`; cleanTrailers (proxy/http/headers.ts) drops hop-by-hop fields only,
 * so the forged XFCC (naming an identity the caller does not have), wren-peer and
 * wren-health-check are relayed to the app as trailer fields, next to the real XFCC.
 *
 * What should happen: "Apps cannot set the header (their sidecar strips it)"
 * (docs/security.md) must hold for every field section the app can read: XFCC is the
 * app's source of the caller's identity, and frameworks that fold trailers into the
 * request metadata (RFC 9110 section 6.5.1 forbids merging only when the field is not
 * understood; Node exposes them as req.trailers) then see a forged one. Envoy's XFCC
 * sanitization (forward_client_cert_details: SANITIZE_SET) leaves the app exactly one
 * XFCC, the one Envoy wrote. Strip mesh fields from trailers as from headers.
 */
const pki = testPki();
const MESH_FIELDS = ['x-forwarded-client-cert', 'wren-peer', 'wren-health-check', 'wren-target-port', 'wren-orig-proto'];
const FORGED = {
  'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin',
  'wren-peer': 'forged',
  'wren-health-check': '1',
  'wren-target-port': '1',
  'wren-orig-proto': 'HTTP/1.1',
};

/** What the app's handler uses of a request (node:http's and node:http2's compat API alike). */
type AppHandler = (req: { readonly trailers: NodeJS.Dict<string | string[]>; resume(): unknown; on(event: 'end', listener: () => void): unknown }, res: { end(body: string): unknown }) => void;

/**
 * The suite's mesh: an app (the server `create` makes around the handler it is given) that
 * reads each request to its end and keeps its trailers, behind a `web` sidecar, and a client
 * sidecar routing web:80 to it.
 */
function meshWithApp(create: (handler: AppHandler) => Server | Http2Server): { readonly client: Proxy; readonly appTrailers: Record<string, unknown> | undefined } {
  const mesh = { client: undefined as unknown as Proxy, appTrailers: undefined as Record<string, unknown> | undefined };
  let close: () => Promise<void>;
  beforeAll(async () => {
    const l = await listenOnLoopback(create((req, res) => {
      req.resume();
      req.on('end', () => {
        mesh.appTrailers = { ...req.trailers };
        res.end('ok');
      });
    }));
    const pair = await startPair(pki, l.port);
    mesh.client = pair.client;
    close = async () => {
      await pair.close();
      await l.close();
    };
  }, 20_000);
  afterAll(() => close());
  return mesh;
}

describe('h2 caller, h2 app', () => {
  const mesh = meshWithApp((handler) => createH2Server((req: Http2ServerRequest, res: Http2ServerResponse) => handler(req, res)));

  test('mesh fields sent as request trailers do not reach the app', async () => {
    const status = await new Promise<unknown>((resolve, reject) => {
      const s = h2connect(`http://127.0.0.1:${mesh.client.outboundPort}`);
      s.on('error', reject);
      const req = s.request({ ':method': 'POST', ':path': '/x', ':authority': 'web', 'content-type': 'text/plain' }, { waitForTrailers: true });
      req.on('wantTrailers', () => req.sendTrailers(FORGED));
      let st: unknown;
      req.on('response', (h) => (st = h[':status']));
      req.resume();
      req.on('error', reject);
      req.on('end', () => {
        s.close();
        resolve(st);
      });
      req.end('body');
    });
    expect(status).toBe(200);
    expect(mesh.appTrailers).toBeDefined();
    for (const f of MESH_FIELDS) expect({ [f]: mesh.appTrailers?.[f] }).toEqual({ [f]: undefined });
  });
});

describe('h1 chunked caller, h1 app', () => {
  const mesh = meshWithApp((handler) => createH1Server((req: IncomingMessage, res: ServerResponse) => handler(req, res)));

  test('mesh fields sent as chunked trailers do not reach the app', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = h1request({ host: '127.0.0.1', port: mesh.client.outboundPort, method: 'POST', path: '/x', headers: { host: 'web', 'transfer-encoding': 'chunked', trailer: Object.keys(FORGED).join(', ') } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.write('body');
      req.addTrailers(FORGED);
      req.end();
    });
    expect(status).toBe(200);
    expect(mesh.appTrailers).toBeDefined();
    for (const f of MESH_FIELDS) expect({ [f]: mesh.appTrailers?.[f] }).toEqual({ [f]: undefined });
  });
});
