import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { certInfo, createCsr, createIntermediateCa, createRootCa, generateKeyPair, readCsr, splitPemCerts, verifyChain } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { Registry } from 'prom-client';
import { controlPlaneSpiffeId, type CertifyRequest, type CertifyResponse } from '../contract/identity.js';
import { IdentityMetrics } from '../control-plane/identity/identity-metrics.js';
import { IdentityService } from '../control-plane/identity/identity-service.js';
import { ServingIdentity } from '../control-plane/identity/serving-identity.js';
import { WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { loadIssuerDir, type Issuer } from '../control-plane/identity/issuer.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { ControlPlane, type ControlPlaneIdentityOptions } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../proxy/identity/control-plane-credentials.js';
import { FakeKubeApi } from './fake-kube-api.js';

/**
 * Identity/Certify end to end: a real control plane (TLS, its serving certificate from
 * its own CA) signing with an operator-provided intermediate, a trust bundle holding two
 * roots, tokens checked by TokenReview through @kubernetes/client-node against the fake
 * API server, or by a bootstrap-token file; a real gRPC client on the proxy's side.
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const BOOT_TOKEN = 'bootstrap-token-for-web-0123456789';

let dir: string;
let api: FakeKubeApi;
let issuer: Issuer;
let cpK8s: ControlPlane;
let cpBoot: ControlPlane;
let k8sClient: CertifyClient;
let bootClient: CertifyClient;

async function startCp(identity: ControlPlaneIdentityOptions): Promise<ControlPlane> {
  return ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity, transport: 'tls',
  });
}

const clientFor = (cp: ControlPlane, bundle = issuer.trustBundlePem, expected = controlPlaneSpiffeId(TD)) =>
  new CertifyClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneCredentials(bundle, expected), CONTROL_PLANE_CHANNEL_OPTIONS);

function csrFor(id: string): { keyPem: string; csrPem: string } {
  const { privateKeyPem } = generateKeyPair();
  return { keyPem: privateKeyPem, csrPem: createCsr(privateKeyPem, id) };
}

async function certifyCode(c: CertifyClient, identity: string, token: string, csrPem: string): Promise<[number, string]> {
  try {
    await c.certify({ identity, token: Buffer.from(token), csrPem, requestedLifetimeMs: 0 }, 5000);
    return [0, 'OK'];
  } catch (e) {
    const err = e as grpc.ServiceError;
    return [err.code, err.details];
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-identity-'));
  const hourAgo = new Date(Date.now() - 3_600_000);
  const oldRoot = createRootCa({ trustDomain: TD, commonName: 'old root', now: hourAgo });
  const newRoot = createRootCa({ trustDomain: TD, commonName: 'new root', now: hourAgo });
  const inter = createIntermediateCa(newRoot, { trustDomain: TD, now: hourAgo });
  // A kubernetes.io/tls Secret as cert-manager writes it; ca.crt lists both anchors (rotation).
  const caDir = join(dir, 'issuer');
  await mkdir(caDir);
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(caDir, 'tls.crt'), inter.certPem);
  await writeFile(join(caDir, 'tls.key'), inter.keyPem);
  await writeFile(join(caDir, 'ca.crt'), oldRoot.certPem + newRoot.certPem);
  issuer = await loadIssuerDir(caDir, { trustDomain: TD });
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - token: ${BOOT_TOKEN}\n    namespace: shop\n    serviceAccount: web\n`);

  api = await FakeKubeApi.start();
  api.tokens.set('tok-web', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'web-0' });
  api.tokens.set('tok-web-expired', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], expired: true });
  api.tokens.set('tok-web-apiserver', { username: 'system:serviceaccount:shop:web', audiences: ['https://kubernetes.default.svc'] });
  api.tokens.set('tok-user', { username: 'alice', audiences: ['wren-identity'] });

  cpK8s = await startCp({ issuer, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }) });
  cpBoot = await startCp({ issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')), certTtlMs: 3_600_000 });
  k8sClient = clientFor(cpK8s);
  bootClient = clientFor(cpBoot);
});

afterAll(async () => {
  k8sClient?.close();
  bootClient?.close();
  await cpK8s?.kill();
  await cpBoot?.kill();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Certify with TokenReview', () => {
  let res: CertifyResponse;
  let leafPem: string;
  let chain: string[];
  beforeAll(async () => {
    res = await k8sClient.certify({ identity: WEB, token: Buffer.from('tok-web'), csrPem: csrFor(WEB).csrPem, requestedLifetimeMs: 0 }, 5000);
    [leafPem, ...chain] = splitPemCerts(res.certChainPem);
  });

  test('the chain (leaf + intermediate) verifies against the two-root bundle with openssl and with certs/verify', async () => {
    expect(chain).toHaveLength(1);
    const bundle = splitPemCerts(res.trustBundlePem);
    expect(bundle).toHaveLength(2);
    await writeFile(join(dir, 'leaf.pem'), leafPem);
    await writeFile(join(dir, 'inter.pem'), chain.join(''));
    await writeFile(join(dir, 'bundle.pem'), res.trustBundlePem);
    for (const purpose of ['sslserver', 'sslclient']) {
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'bundle.pem'), '-untrusted', join(dir, 'inter.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
      expect(out.trim()).toBe(`${join(dir, 'leaf.pem')}: OK`);
    }
    // Without the intermediate the leaf does not verify: the chain really is needed.
    expect(() => execFileSync('openssl', ['verify', '-CAfile', join(dir, 'bundle.pem'), join(dir, 'leaf.pem')], { stdio: 'pipe' })).toThrow();
    expect(verifyChain(leafPem, chain, bundle)).toEqual({ ok: true, spiffeId: WEB });
  });

  test('the leaf profile: one SPIFFE URI SAN, digitalSignature+keyEncipherment, serverAuth+clientAuth, not a CA, 24 h', () => {
    const info = certInfo(leafPem);
    expect(info.uris).toEqual([WEB]);
    expect(info.dnsNames).toEqual([]);
    expect(info.ips).toEqual([]);
    expect(info.isCa).toBe(false);
    expect([...info.keyUsage].sort()).toEqual(['digitalSignature', 'keyEncipherment']);
    expect([...info.extKeyUsage].sort()).toEqual(['clientAuth', 'serverAuth']);
    expect(res.validUntilMs).toBe(info.notAfter.getTime());
    expect(Math.abs(res.validUntilMs - Date.now() - 24 * 3_600_000)).toBeLessThan(60_000);
  });

  test('a CSR for another identity, or a token for another identity, is PERMISSION_DENIED', async () => {
    expect(await certifyCode(k8sClient, WEB, 'tok-web', csrFor(CART).csrPem)).toEqual([grpc.status.PERMISSION_DENIED, expect.stringContaining('CSR asks for')]);
    expect(await certifyCode(k8sClient, CART, 'tok-web', csrFor(CART).csrPem)).toEqual([grpc.status.PERMISSION_DENIED, expect.stringContaining('the token proves shop/web')]);
    expect(await certifyCode(k8sClient, `spiffe://other.td/ns/shop/sa/web`, 'tok-web', csrFor('spiffe://other.td/ns/shop/sa/web').csrPem)).toEqual([
      grpc.status.PERMISSION_DENIED, expect.stringContaining('outside trust domain'),
    ]);
  });

  test('bad, expired, wrong-audience and non-service-account tokens are UNAUTHENTICATED', async () => {
    const { csrPem } = csrFor(WEB);
    expect(await certifyCode(k8sClient, WEB, 'no-such-token', csrPem)).toEqual([grpc.status.UNAUTHENTICATED, expect.stringContaining('invalid bearer token')]);
    expect(await certifyCode(k8sClient, WEB, 'tok-web-expired', csrPem)).toEqual([grpc.status.UNAUTHENTICATED, expect.stringContaining('expired')]);
    expect(await certifyCode(k8sClient, WEB, 'tok-web-apiserver', csrPem)).toEqual([grpc.status.UNAUTHENTICATED, expect.stringContaining('audiences')]);
    expect(await certifyCode(k8sClient, WEB, 'tok-user', csrPem)).toEqual([grpc.status.UNAUTHENTICATED, expect.stringContaining('not a service account')]);
    expect(await certifyCode(k8sClient, WEB, '', csrPem)).toEqual([grpc.status.UNAUTHENTICATED, 'no token was presented']);
    const reviews = api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews');
    expect(reviews.length).toBeGreaterThanOrEqual(4);
  });

  test('malformed requests are INVALID_ARGUMENT', async () => {
    expect((await certifyCode(k8sClient, 'not-a-spiffe-id', 'tok-web', csrFor(WEB).csrPem))[0]).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await certifyCode(k8sClient, WEB, 'tok-web', 'garbage'))[0]).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test('issued and refused certificates are counted in the control plane registry', async () => {
    const text = await cpK8s.metrics.registry.metrics();
    expect(text).toMatch(/^wren_identity_certificates_issued_total [1-9]/m);
    expect(text).toMatch(/^wren_identity_certificates_refused_total\{reason="unauthenticated"\} [4-9]/m);
    expect(text).toMatch(/^wren_identity_certificates_refused_total\{reason="identity_mismatch"\} [3-9]/m);
    expect(text).toMatch(/^wren_identity_sign_duration_seconds_count [1-9]/m);
    expect(text).toMatch(/^wren_identity_issuer_expiry_timestamp_seconds \d/m);
  });
});

describe('Certify with bootstrap tokens', () => {
  test('a known token for the requested identity gets a certificate, capped at the configured lifetime', async () => {
    const res = await bootClient.certify({ identity: WEB, token: Buffer.from(BOOT_TOKEN), csrPem: csrFor(WEB).csrPem, requestedLifetimeMs: 10 * 3_600_000 }, 5000);
    const info = certInfo(splitPemCerts(res.certChainPem)[0]);
    expect(info.spiffeId).toBe(WEB);
    expect(Math.abs(info.notAfter.getTime() - Date.now() - 3_600_000)).toBeLessThan(5_000);
    const short = await bootClient.certify({ identity: WEB, token: Buffer.from(BOOT_TOKEN), csrPem: csrFor(WEB).csrPem, requestedLifetimeMs: 60_000 }, 5000);
    expect(Math.abs(short.validUntilMs - Date.now() - 60_000)).toBeLessThan(5_000);
  });

  test('unknown tokens are UNAUTHENTICATED, a token for another identity PERMISSION_DENIED', async () => {
    expect(await certifyCode(bootClient, WEB, 'bootstrap-token-for-web-0123456788', csrFor(WEB).csrPem)).toEqual([grpc.status.UNAUTHENTICATED, 'unknown bootstrap token']);
    expect((await certifyCode(bootClient, CART, BOOT_TOKEN, csrFor(CART).csrPem))[0]).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe('the control plane serves TLS', () => {
  test('its certificate is for spiffe://<td>/ns/wren-system/sa/wren-control-plane and chains to the bundle', () => {
    const serving = cpK8s.serving!.certificate;
    expect(serving.spiffeId).toBe(controlPlaneSpiffeId(TD));
    expect(verifyChain(serving.certPem, serving.chainPems, splitPemCerts(issuer.trustBundlePem))).toEqual({ ok: true, spiffeId: controlPlaneSpiffeId(TD) });
  });

  test('a client expecting another identity, trusting another root, or speaking plaintext cannot call it', async () => {
    const wrongId = clientFor(cpK8s, issuer.trustBundlePem, `spiffe://${TD}/ns/evil/sa/wren-control-plane`);
    const otherRoot = clientFor(cpK8s, createRootCa({ trustDomain: TD }).certPem);
    const plain = new CertifyClient(`127.0.0.1:${cpK8s.grpcPort}`, grpc.credentials.createInsecure());
    try {
      for (const c of [wrongId, otherRoot, plain]) expect((await certifyCode(c, WEB, 'tok-web', csrFor(WEB).csrPem))[0]).toBe(grpc.status.UNAVAILABLE);
    } finally {
      for (const c of [wrongId, otherRoot, plain]) c.close();
    }
  });
});

test('a proxy sends only its identity, token and CSR: the private key is not on the wire', async () => {
  const authenticator = BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml'));
  const service = new IdentityService({ issuer, authenticator, clock: systemClock, logger: silentLogger, metrics: new IdentityMetrics(new Registry(), issuer) });
  const def = IdentityService.definition();
  const raw: Buffer[] = [];
  // The real service behind a definition that records each request's bytes as they arrive.
  const recording = { Certify: { ...def.Certify, requestDeserialize: (b: Buffer) => (raw.push(Buffer.from(b)), def.Certify.requestDeserialize(b)) } };
  const serving = new ServingIdentity({ issuer, spiffeId: controlPlaneSpiffeId(TD), ttlMs: 3_600_000, clock: systemClock, random: seededRandom(2), logger: silentLogger });
  const server = new grpc.Server();
  server.addService(recording, service.implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', serving.credentials, (e, p) => (e ? reject(e) : resolve(p))));
  const client = new CertifyClient(`127.0.0.1:${port}`, controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD)), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    const wi = new WorkloadIdentity({
      spiffeId: WEB, certify: client.certify, readToken: async () => Buffer.from(BOOT_TOKEN), clock: systemClock, random: seededRandom(3), logger: silentLogger,
    });
    const tls = await wi.obtain(5000);
    expect(tls.spiffeId).toBe(WEB);
    expect(raw).toHaveLength(1);
    const bytes = raw[0];
    expect(bytes.toString('latin1')).toContain('-----BEGIN CERTIFICATE REQUEST-----');
    expect(bytes.toString('latin1')).not.toContain('PRIVATE KEY');
    const der = createPrivateKey(tls.material.keyPem).export({ type: 'pkcs1', format: 'der' });
    expect(bytes.includes(der)).toBe(false);
    expect(bytes.toString('latin1')).not.toContain(der.toString('base64').slice(100, 164));
    const req = def.Certify.requestDeserialize(bytes) as CertifyRequest;
    expect(Object.keys(req).sort()).toEqual(['csrPem', 'identity', 'requestedLifetimeMs', 'token']);
    expect(req.identity).toBe(WEB);
    // The CSR carries the public half of the key the proxy now serves with.
    const pub = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'pem' });
    expect(pub(readCsr(req.csrPem).publicKeyPem)).toBe(pub(tls.material.keyPem));
  } finally {
    client.close();
    serving.stop();
    server.forceShutdown();
  }
});
