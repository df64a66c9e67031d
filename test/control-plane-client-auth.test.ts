import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse, type Subscribe } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { MAX_STREAMS_PER_POD } from '../control-plane/discovery/discovery-server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { connectControlPlane } from '../proxy/discovery/connect-proxy.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { Proxy } from '../proxy/proxy.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';

/**
 * Proxies authenticate to the control plane (issue 14.1): a real control plane serving
 * TLS (its serving certificate from its own CA, a directory mesh listing two meshed pods
 * and an AuthorizationPolicy for each), workload certificates obtained through Certify
 * with bootstrap tokens, and real grpc-js discovery streams presenting them (or not).
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const tokenOf = (sa: string) => `bootstrap-token-${sa}-0123456789abcdef`;

const MESH = `${meshedPodYaml('web-0', 'shop', 'web', { app: 'web', tier: 'front' })}---
${meshedPodYaml('cart-0', 'shop', 'cart', { app: 'cart' })}---
apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["${TD}/ns/shop/sa/cart"] } }] }]
---
apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: cart-secret-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: cart } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["${TD}/ns/payments/sa/ledger"] } }] }]
---
kind: MeshService
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints: [{ address: 127.0.0.1, port: 8080, proxyPort: 15006, identity: "${WEB}" }]
---
kind: MeshService
metadata: { name: cart, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints: [{ address: 127.0.0.2, port: 8080, proxyPort: 15006, identity: "${CART}" }]
`;

let dir: string;
let issuer: Issuer;
let cp: ControlPlane;
let address: string;
const logs: string[] = [];
const clients: grpc.Client[] = [];
const certifiers: CertifyClient[] = [];
let web: ClientCertificate;
let cart: ClientCertificate;

/** Credentials as a proxy makes them: the control plane verified by bundle and SPIFFE ID; `cert` presented when given. */
function credentials(cert?: ClientCertificate): grpc.ChannelCredentials {
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  if (cert) presentCertificate(creds, cert);
  return creds;
}

/** A key and a certificate for `id` from the control plane's Certify, authenticated with the bootstrap token. */
async function certify(id: string, sa: string, creds = credentials(), lifetimeMs = 0, token = tokenOf(sa)): Promise<ClientCertificate> {
  const keyPem = generateKeyPair().privateKeyPem;
  const c = new CertifyClient(address, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  certifiers.push(c);
  const r = await c.certify({ identity: id, token: Buffer.from(token), csrPem: createCsr(keyPem, id), requestedLifetimeMs: lifetimeMs }, 10_000);
  return { keyPem, certChainPem: r.certChainPem };
}

const sub = (spiffeId: string, pod: string, labels: Record<string, string> = {}): Subscribe => ({ identity: { spiffeId, namespace: 'shop', pod, labels }, services: [], lastVersion: '' });

interface Outcome {
  readonly response: DiscoveryResponse | null;
  readonly code: grpc.status | null;
  readonly details: string;
  readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
}

/** Opens a discovery stream, sends `messages`, and resolves with the first response or the status it ended with. */
function open(creds: grpc.ChannelCredentials, messages: DiscoveryRequest[]): Promise<Outcome> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(client);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  return new Promise((resolve) => {
    stream.once('data', (r: DiscoveryResponse) => resolve({ response: r, code: null, details: '', stream }));
    stream.once('error', (e: grpc.ServiceError) => resolve({ response: null, code: e.code, details: e.details, stream }));
    for (const m of messages) stream.write(m);
  });
}

async function refusals(of: ControlPlane = cp): Promise<Record<string, number>> {
  const text = await of.metrics.registry.metrics();
  return Object.fromEntries([...text.matchAll(/^wren_cp_discovery_refused_total\{reason="([^"]+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
}

const refusedLogs = () => logs.filter((l) => l.includes('discovery stream refused')).map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-cp-client-auth-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'shop.yaml'), MESH);
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n${['web', 'cart'].map((sa) => `  - { token: ${tokenOf(sa)}, namespace: shop, serviceAccount: ${sa} }`).join('\n')}\n`);
  issuer = generateIssuer(TD);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(3),
    logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
  await cp.whenReady();
  address = `127.0.0.1:${cp.grpcPort}`;
  web = await certify(WEB, 'web');
  cart = await certify(CART, 'cart');
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of certifiers) c.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

test('a proxy presenting its own certificate gets its own workload inbound policy only, and is shown as authenticated', async () => {
  const o = await open(credentials(web), [{ subscribe: sub(WEB, 'web-0', { app: 'web' }) }]);
  expect(o.code).toBeNull();
  const policy = JSON.parse(o.response!.inboundPolicy!.policyJson) as { authorizationPolicies: { name: string }[] };
  expect(policy.authorizationPolicies.map((p) => p.name)).toEqual(['shop/web-allow']);
  expect(o.response!.inboundPolicy!.policyJson).not.toContain('cart-secret-allow');
  expect(cp.discovery.debugProxies()).toEqual(expect.arrayContaining([expect.objectContaining({ authenticatedAs: WEB, identity: expect.objectContaining({ spiffeId: WEB, pod: 'web-0' }) })]));
  o.stream.cancel();
});

test('a sidecar (connectControlPlane) subscribes with its workload certificate; its egress list (discovery.services) scopes what it receives', async () => {
  const config = parseProxyConfig({
    identity: { trustDomain: TD, namespace: 'shop', serviceAccount: 'web', pod: 'web-0', certify: { controlPlane: address, tokenFile: join(dir, 'unused.token'), trustBundlePem: issuer.trustBundlePem } },
    discovery: { controlPlane: address, services: ['cart.shop'] },
    listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
    shutdown: { gracePeriodMs: 1000 },
  }, 'test');
  const tls = new TlsIdentity({ ...web, trustBundlePem: issuer.trustBundlePem });
  const proxy = await Proxy.start({ config, tls, logger: createLogger({ sink: () => undefined }), staticMesh: false });
  // The credentials start without a client certificate: connectControlPlane presents proxy.tls.
  const client = connectControlPlane(proxy, { address, namespace: 'shop', pod: 'web-0', credentials: credentials(), backoff: { initialMs: 50, maxMs: 200 } });
  try {
    const snap = await client.onFirstSnapshot();
    expect(snap.services.map((x) => `${x.name}.${x.namespace}`)).toEqual(['cart.shop']);
    expect(snap.inboundPolicy?.authorizationPolicies.map((p) => p.name)).toEqual(['shop/web-allow']);
    expect(cp.discovery.debugProxies()).toEqual(expect.arrayContaining([expect.objectContaining({ authenticatedAs: WEB, services: ['cart.shop'] })]));
  } finally {
    await client.stop();
    await proxy.close();
  }
}, 20_000);

test('no client certificate: UNAUTHENTICATED, counted and logged', async () => {
  const before = (await refusals())['no-client-certificate'] ?? 0;
  const o = await open(credentials(), [{ subscribe: sub(WEB, 'web-0') }]);
  expect({ code: o.code, response: o.response }).toEqual({ code: grpc.status.UNAUTHENTICATED, response: null });
  expect((await refusals())['no-client-certificate']).toBe(before + 1);
  expect(refusedLogs().at(-1)).toMatchObject({ level: 'warn', code: 'UNAUTHENTICATED', reason: 'no-client-certificate' });
});

test('a certificate from another CA (same trust domain, same identity): UNAUTHENTICATED', async () => {
  const rogue = generateIssuer(TD);
  const keyPem = generateKeyPair().privateKeyPem;
  const issued = rogue.ca.issue(createCsr(keyPem, WEB), { identity: WEB });
  const before = (await refusals())['no-client-certificate'] ?? 0;
  const o = await open(credentials({ keyPem, certChainPem: issued.certPem }), [{ subscribe: sub(WEB, 'web-0') }]);
  expect({ code: o.code, response: o.response }).toEqual({ code: grpc.status.UNAUTHENTICATED, response: null });
  expect((await refusals())['no-client-certificate']).toBe(before + 1);
});

test('a forged Subscribe (a valid certificate for web claiming cart): PERMISSION_DENIED, and its reports are never recorded', async () => {
  const o = await open(credentials(web), [
    { subscribe: sub(CART, 'cart-0', { app: 'cart' }) },
    { identityReport: { trustAnchorFingerprints: ['AA:BB'], chainRootFingerprint: 'AA:BB', leafSerial: '01', notAfterMs: 1, startupTrustAnchorFingerprints: [] } },
    { health: { ejected: [{ service: 'web.shop', servicePort: 80, address: '127.0.0.1', port: 8080, kind: 'outlier-ejection', reason: 'consecutive-5xx', ejectedForMs: 1 }] } },
  ]);
  expect({ code: o.code, response: o.response }).toEqual({ code: grpc.status.PERMISSION_DENIED, response: null });
  expect(o.details).toContain(`the client certificate is ${WEB}`);
  expect((await refusals())['identity-mismatch']).toBeGreaterThanOrEqual(1);
  // `wren trust-anchors check` reads /debug/trust: nothing there claims to be cart.
  expect(cp.discovery.debugTrust().proxies.filter((p) => p.identity === CART)).toEqual([]);
  // Nor does /debug/health hold a report in cart's name (the input of mesh-wide withdrawal).
  expect(cp.discovery.debugHealth()).toEqual([]);
  const line = refusedLogs().find((l) => l.reason === 'identity-mismatch')!;
  expect(line).toMatchObject({ code: 'PERMISSION_DENIED', certificate: WEB, claimed: CART });
  // Identities and the serial only: no certificate, key or token in any log line.
  expect(logs.filter((l) => /BEGIN|PRIVATE|bootstrap-token-/.test(l))).toEqual([]);
});

test("a certificate of another identity naming this pod, or this pod with another pod's labels: PERMISSION_DENIED", async () => {
  // cart's certificate, cart's identity, but web's pod (to get web's inbound policy).
  const podClaim = await open(credentials(cart), [{ subscribe: sub(CART, 'web-0', { app: 'web' }) }]);
  expect({ code: podClaim.code, response: podClaim.response }).toEqual({ code: grpc.status.PERMISSION_DENIED, response: null });
  expect(podClaim.details).toMatch(/pod shop\/web-0 runs as service account web/);
  // web's own pod, claiming cart's labels (to get cart's inbound policy).
  const labelClaim = await open(credentials(web), [{ subscribe: sub(WEB, 'web-0', { app: 'cart' }) }]);
  expect({ code: labelClaim.code, response: labelClaim.response }).toEqual({ code: grpc.status.PERMISSION_DENIED, response: null });
  // Another namespace than the certificate's.
  const nsClaim = await open(credentials(web), [{ subscribe: { ...sub(WEB, 'web-0'), identity: { spiffeId: WEB, namespace: 'payments', pod: 'web-0', labels: {} } } }]);
  expect(nsClaim.code).toBe(grpc.status.PERMISSION_DENIED);
  expect(await refusals()).toMatchObject({ 'pod-mismatch': 1, 'labels-mismatch': 1, 'namespace-mismatch': 1 });
});

test('one pod holds at most MAX_STREAMS_PER_POD discovery streams: the next is RESOURCE_EXHAUSTED, counted; a closed one frees its place (adv15)', async () => {
  const streamsOf = (pod: string) => cp.discovery.debugProxies().filter((p) => (p.identity as { pod?: string } | null)?.pod === pod).length;
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await open(credentials(web), [{ subscribe: sub(WEB, 'web-limits') }]));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  const over = await open(credentials(web), [{ subscribe: sub(WEB, 'web-limits') }]);
  expect({ code: over.code, response: over.response }).toEqual({ code: grpc.status.RESOURCE_EXHAUSTED, response: null });
  expect(over.details).toBe(`pod shop/web-limits has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}`);
  expect((await refusals())['streams-per-pod']).toBe(1);
  // The bound is the pod's: another pod of the same identity is served (with a certificate of
  // its own: web's is at its own 8 too, its certificate's bound, adv53).
  const other = await open(credentials(await certify(WEB, 'web')), [{ subscribe: sub(WEB, 'web-limits-2') }]);
  expect(other.code).toBeNull();
  other.stream.cancel();
  held.pop()!.stream.cancel();
  for (let i = 0; i < 100 && streamsOf('web-limits') > MAX_STREAMS_PER_POD - 1; i++) await new Promise((r) => setTimeout(r, 20));
  const again = await open(credentials(web), [{ subscribe: sub(WEB, 'web-limits') }]);
  expect(again.code).toBeNull();
  for (const o of [...held, again]) o.stream.cancel();
});

test('sidecars that name no pod (identity.pod is optional outside Kubernetes) are bounded per certificate, not 8 per namespace', async () => {
  // Each sidecar has its own certificate: MAX_STREAMS_PER_POD + 1 of them, none naming a pod, are all served.
  const certs: ClientCertificate[] = [];
  for (let i = 0; i <= MAX_STREAMS_PER_POD; i++) certs.push(await certify(WEB, 'web'));
  const held: Outcome[] = [];
  for (const c of certs) held.push(await open(credentials(c), [{ subscribe: sub(WEB, '') }]));
  expect(held.map((o) => o.details)).toEqual(held.map(() => ''));
  // One certificate is still bounded.
  for (let i = 1; i < MAX_STREAMS_PER_POD; i++) held.push(await open(credentials(certs[0]), [{ subscribe: sub(WEB, '') }]));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  const over = await open(credentials(certs[0]), [{ subscribe: sub(WEB, '') }]);
  expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(over.details).toContain('no pod named');
  for (const o of held) o.stream.cancel();
}, 30_000);

test('one certificate claiming a new pod the directory does not list on each stream is still bounded: 8 streams per certificate (adv53)', async () => {
  // A bootstrap token's certificate names no pod; the directory lists web-0 only, so any other name is let through.
  const c = await certify(WEB, 'web');
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await open(credentials(c), [{ subscribe: sub(WEB, `ghost-${i}`) }]));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  // Before: served, and so on for every new name (8 streams per made-up pod, each an encoded catalog).
  const over = await open(credentials(c), [{ subscribe: sub(WEB, `ghost-${MAX_STREAMS_PER_POD}`) }]);
  expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(over.details).toMatch(new RegExp(`^certificate ${WEB} serial [0-9a-f]+ has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}$`));
  // Another certificate claiming one of those pods: served (the pod's own count is 1).
  const other = await open(credentials(await certify(WEB, 'web')), [{ subscribe: sub(WEB, 'ghost-0') }]);
  expect(other.code).toBeNull();
  for (const o of [...held, other]) o.stream.cancel();
}, 30_000);

test('Certify renews by certificate without a token; a certificate of another identity still needs one', async () => {
  const renewed = await certify(WEB, 'web', credentials(web), 0, '');
  expect(renewed.certChainPem).toContain('BEGIN CERTIFICATE');
  expect(logs.some((l) => l.includes('certificate issued') && l.includes('"via":"client-certificate"'))).toBe(true);
  await expect(certify(WEB, 'web', credentials(cart), 0, '')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  await expect(certify(WEB, 'web', credentials(), 0, '')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
});

test('a stream ends with UNAUTHENTICATED when the certificate it was opened with expires', async () => {
  const short = await certify(WEB, 'web', credentials(), 2_000);
  const o = await open(credentials(short), [{ subscribe: sub(WEB, 'web-0') }]);
  expect(o.code).toBeNull();
  const ended = await new Promise<grpc.ServiceError>((resolve) => o.stream.once('error', resolve));
  expect({ code: ended.code, details: ended.details }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: 'the client certificate has expired' });
  expect((await refusals())['certificate-expired']).toBe(1);
}, 15_000);

/**
 * The Kubernetes source knows every meshed pod: the Subscribe's pod must be one of them,
 * running as the certificate's service account. (Last in the file: it points the helpers'
 * `address` at its own control plane, which shares the CA.)
 */
describe('Kubernetes source: the stream is bound to a pod of the certificate\'s service account', () => {
  const WEB_SA = `spiffe://${TD}/ns/shop/sa/web-sa`;
  let api: FakeKubeApi;
  let k8s: ControlPlane;
  let cert: ClientCertificate;

  beforeAll(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1'));
    api.apply('pods', podJson('other-a', 'shop', 'other-sa', '10.0.0.2'));
    api.apply('pods', podJson('legacy-a', 'shop', 'web-sa', '10.0.0.3', false));
    // Opted in, but the injector never ran (webhook down, failurePolicy Ignore): no sidecar, so not meshed.
    const uninjected = podJson('asked-a', 'shop', 'web-sa', '10.0.0.5', false) as { metadata: { labels: Record<string, string> } };
    uninjected.metadata.labels['wren.io/inject'] = 'enabled';
    api.apply('pods', uninjected);
    api.tokens.set('tok-web-sa', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-a' });
    k8s = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(4),
      logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
      identity: { issuer, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }) },
      transport: 'tls',
    });
    await k8s.whenReady();
    address = `127.0.0.1:${k8s.grpcPort}`;
    cert = await certify(WEB_SA, 'web-sa', credentials(), 0, 'tok-web-sa');
  }, 30_000);

  afterAll(async () => {
    await k8s?.kill();
    await api?.close();
  });

  const subscribeAs = (pod: string) => open(credentials(cert), [{ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } }]);

  test('its own pod: served', async () => {
    const o = await subscribeAs('web-a');
    expect(o.code).toBeNull();
    expect(o.response!.full).toBe(true);
    o.stream.cancel();
  });

  test('a pod of another service account, an unmeshed pod, a pod that does not exist: PERMISSION_DENIED', async () => {
    const other = await subscribeAs('other-a');
    expect({ code: other.code, details: other.details }).toEqual({ code: grpc.status.PERMISSION_DENIED, details: `pod shop/other-a runs as service account other-sa, the client certificate is ${WEB_SA}` });
    expect((await subscribeAs('legacy-a')).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await subscribeAs('web-zzz')).code).toBe(grpc.status.PERMISSION_DENIED);
    expect(await refusals(k8s)).toMatchObject({ 'pod-mismatch': 1, 'unknown-pod': 2 });
  });

  test('a pod that asked for the mesh but has no sidecar: PERMISSION_DENIED (no proxy runs in it)', async () => {
    const before = (await refusals(k8s))['unknown-pod'] ?? 0;
    const o = await subscribeAs('asked-a');
    expect({ code: o.code, details: o.details }).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'no meshed pod shop/asked-a is known' });
    expect((await refusals(k8s))['unknown-pod']).toBe(before + 1);
  });

  test('a pod the watch has just seen is served (the proxy retries until then)', async () => {
    // web-b's own certificate (its token is bound to it): web-a's may name web-a only (adv59).
    api.tokens.set('tok-web-b', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-b' });
    const webB = await certify(WEB_SA, 'web-sa', credentials(), 0, 'tok-web-b');
    const subscribeB = () => open(credentials(webB), [{ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod: 'web-b', labels: {} }, services: [], lastVersion: '' } }]);
    expect((await subscribeB()).code).toBe(grpc.status.PERMISSION_DENIED);
    api.apply('pods', podJson('web-b', 'shop', 'web-sa', '10.0.0.4'));
    let o = await subscribeB();
    for (let i = 0; i < 50 && o.code !== null; i++) {
      await new Promise((r) => setTimeout(r, 50));
      o = await subscribeB();
    }
    expect(o.code).toBeNull();
    o.stream.cancel();
  });
});
