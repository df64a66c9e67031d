import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (inbound-target-upstream-loop).
 *
 * What an attacker does: a compromised mesh workload (mallory, with its own valid mesh
 * certificate) talks mTLS straight to the `web` sidecar's inbound port and sets
 * `wren-target-port` to the port of one of web's explicit upstream listeners (config
 * `upstreams`, e.g. `secret:80` on 127.0.0.1:<localPort>).
 *
 * What happens: parseTargetPort refuses only the proxy's listener ports (inbound,
 * outbound, admin, metrics and the 1500x defaults), not the upstream listeners' ports, so
 * the inbound delivers to 127.0.0.1:<localPort>: web's own outbound path. web's sidecar
 * then calls `secret` with web's identity. The `secret` service's AuthorizationPolicy
 * (ALLOW only from web) sees web and lets mallory through: a confused deputy that
 * launders the caller's identity.
 *
 * What should happen: the target port is refused (400 bad-request) like every other port
 * of the proxy's own. proxy/inbound/target-port.ts says so itself: "the proxy's own ports
 * are refused so a caller cannot loop traffic through the proxy"; Istio (since 1.10)
 * delivers inbound traffic to the pod IP, never into the sidecar's own listeners, and an
 * AuthorizationPolicy principal is the caller's identity (security/v1beta1
 * authorization_policy.proto `source.principals`), not a hop's it can steer.
 */
const pki = testPki();
let secretProxy: Proxy, webProxy: Proxy;
const closers: (() => Promise<void>)[] = [];
let secretAppPort = 0;

async function app(name: string): Promise<number> {
  const l = await listenOnLoopback(createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => res.end(`${name}:${req.headers['x-forwarded-client-cert'] ?? ''}`));
  }));
  closers.push(l.close);
  return l.port;
}

beforeAll(async () => {
  secretAppPort = await app('secret');
  secretProxy = await startProxy({
    pki,
    serviceAccount: 'secret',
    config: { policy: { authorizationPolicies: [{ name: 'default/only-web', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/web'] } }] }] }] } },
  });
  webProxy = await startProxy({
    pki,
    serviceAccount: 'web',
    services: [meshService('secret', 80, [{ appPort: secretAppPort, proxy: secretProxy }])],
    config: { upstreams: [{ service: 'secret', port: 80, localPort: 0 }] },
  });
}, 20_000);

afterAll(async () => {
  await webProxy.close();
  await secretProxy.close();
  for (const c of closers) await c();
});

function mallory(p: Proxy): ClientHttp2Session {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${p.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  return s;
}

function get(s: ClientHttp2Session, authority: string, targetPort: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const st = s.request({ ':method': 'GET', ':path': '/', ':authority': authority, 'wren-target-port': String(targetPort), 'wren-orig-proto': 'HTTP/1.1' });
    let status = 0;
    let body = '';
    st.on('response', (h) => (status = Number(h[':status'])));
    st.on('data', (d: Buffer) => (body += d.toString()));
    st.on('error', reject);
    st.on('close', () => resolve({ status, body }));
  });
}

test('sanity: mallory is refused by secret itself (ALLOW only from web)', async () => {
  const s = mallory(secretProxy);
  try {
    expect((await get(s, 'secret', secretAppPort)).status).toBe(403);
  } finally {
    s.destroy();
  }
});

test('a peer cannot aim wren-target-port at the sidecar\'s own upstream listener and reach secret as web', async () => {
  const s = mallory(webProxy);
  try {
    const r = await get(s, 'secret', webProxy.upstreamPorts[0]);
    // Today: 200 "secret:By=...secret;URI=...sa/web": secret served mallory, believing it was web.
    expect(r.body).not.toMatch(/^secret:/);
    expect(r.status).toBe(400);
  } finally {
    s.destroy();
  }
});
