import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority, createCsr, createIntermediateCa, createRootCa, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId, loadIdentityProto, type CertifyRequest, type CertifyResponse } from '../contract/identity.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';
import { swappableIssuer } from './control-plane-harness.js';

/**
 * Adversarial review of control-plane mTLS (issue #14.1): the trust anchor a proxy's
 * certificate chains to is REMOVED from the bundle (a compromised root rotated out).
 * node:tls verifies a client chain only at the handshake, and grpc-js keeps reporting that
 * verdict for every later call on the connection, so the control plane re-derives the
 * current anchor per stream and per Certify (control-plane/identity/client-anchors.ts):
 * streams under the removed root end, and a connection made before the removal can neither
 * open new streams nor renew by certificate.
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const TOKEN = 'bootstrap-token-web-0123456789abcdef';
const MESH = meshedPodYaml('web-0', 'shop', 'web', { app: 'web' });
const SUBSCRIBE = { subscribe: { identity: { spiffeId: WEB, namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } } as DiscoveryRequest;

/** The same CA handing out another bundle (the rotation's "add" and "remove" steps). */
const withBundle = (i: Issuer, ...bundle: Issuer[]): Issuer => ({ ca: i.ca, trustBundlePem: bundle.map((b) => b.trustBundlePem).join(''), source: 'test' });

/** A certificate for web signed by `by` (chain: its intermediates). */
function leafOf(by: Issuer): ClientCertificate {
  const keyPem = generateKeyPair().privateKeyPem;
  const issued = by.ca.issue(createCsr(keyPem, WEB), { identity: WEB, ttlMs: 3_600_000 });
  return { keyPem, certChainPem: [issued.certPem, ...issued.chainPems].join('') };
}

let dir: string;
let cps: ControlPlane[] = [];
let closers: { close(): void }[] = [];
let logs: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv2-anchor-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'shop.yaml'), MESH);
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - { token: ${TOKEN}, namespace: shop, serviceAccount: web }\n`);
});
afterEach(async () => {
  for (const c of closers) c.close();
  for (const cp of cps) await cp.close();
  closers = [];
  cps = [];
  logs = [];
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function controlPlane(issuer: Issuer): Promise<{ cp: ControlPlane; address: string }> {
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(3),
    logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
  cps.push(cp);
  await cp.whenReady();
  return { cp, address: `127.0.0.1:${cp.grpcPort}` };
}

const creds = (bundle: string, cert?: ClientCertificate) => {
  const c = controlPlaneCredentials(bundle, controlPlaneSpiffeId(TD));
  if (cert) presentCertificate(c, cert);
  return c;
};

type Stream = grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
interface Opened {
  /** Resolves with 'data' on the first response, or the status the stream ended with first. */
  readonly first: Promise<'data' | grpc.status>;
  readonly ended: Promise<grpc.ServiceError>;
  readonly responses: DiscoveryResponse[];
}
/** Opens a discovery stream on `client` and subscribes as web. */
function subscribe(client: grpc.Client): Opened {
  const stream = (client as unknown as { Stream(): Stream }).Stream();
  const responses: DiscoveryResponse[] = [];
  const ended = new Promise<grpc.ServiceError>((res) => stream.on('error', res));
  const first = new Promise<'data' | grpc.status>((res) => {
    stream.once('data', () => res('data'));
    void ended.then((e) => res(e.code));
  });
  stream.on('data', (r: DiscoveryResponse) => {
    responses.push(r);
    stream.write({ ack: { nonce: r.nonce } } as DiscoveryRequest);
  });
  stream.write(SUBSCRIBE);
  return { first, ended, responses };
}

function discoveryClient(address: string, c: grpc.ChannelCredentials, channel?: grpc.Channel): grpc.Client {
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, c, { ...CONTROL_PLANE_CHANNEL_OPTIONS, ...(channel ? { channelOverride: channel } : {}) });
  closers.push(client);
  return client;
}

async function refusals(cp: ControlPlane): Promise<Record<string, number>> {
  const text = await cp.metrics.registry.metrics();
  return Object.fromEntries([...text.matchAll(/^wren_cp_discovery_refused_total\{reason="([^"]+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
}
const refusedLogs = () => logs.filter((l) => l.includes('discovery stream refused')).map((l) => JSON.parse(l) as Record<string, unknown>);
const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
};

test('removing the root a discovery stream\'s certificate chains to ends that stream (UNAUTHENTICATED, trust-anchor-removed); a stream under a kept root goes on', async () => {
  const oldRoot = generateIssuer(TD);
  const newRoot = generateIssuer(TD);
  // Rotation's middle step: both roots trusted.
  const sw = swappableIssuer(withBundle(newRoot, oldRoot, newRoot));
  const { cp, address } = await controlPlane(sw.issuer);
  const both = oldRoot.trustBundlePem + newRoot.trustBundlePem;
  const oldLeaf = leafOf(oldRoot);
  const stranded = subscribe(discoveryClient(address, creds(both, oldLeaf)));
  const kept = subscribe(discoveryClient(address, creds(both, leafOf(newRoot))));
  expect(await stranded.first).toBe('data');
  expect(await kept.first).toBe('data');
  await until(() => cp.discovery.debugProxies().every((p) => p.inflightVersion === null));
  const keptBefore = kept.responses.length;
  let keptEnded: grpc.ServiceError | null = null;
  void kept.ended.then((e) => (keptEnded = e));

  // The old root is rotated out: only the new one is trusted from now on.
  sw.swap(withBundle(newRoot, newRoot));
  const e = await stranded.ended;
  expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
  expect(e.details).toMatch(/trust anchor .* was removed from the trust bundle/);
  // The stream under the kept root receives the new trust state and stays open.
  expect(await until(() => kept.responses.length > keptBefore)).toBe(true);
  expect(kept.responses.at(-1)?.trustBundle?.trustAnchorFingerprints).toHaveLength(1);
  await new Promise((r) => setTimeout(r, 300));
  expect(keptEnded).toBeNull();
  expect(cp.discovery.subscriberCount).toBe(1);
  expect((await refusals(cp))['trust-anchor-removed']).toBe(1);
  expect(refusedLogs().find((l) => l.reason === 'trust-anchor-removed')).toMatchObject({ code: 'UNAUTHENTICATED', certificate: WEB });
  expect(logs.filter((l) => /BEGIN|PRIVATE|bootstrap-token-/.test(l))).toEqual([]);

  // Control: a NEW connection with the same certificate is refused (the TLS `ca` followed the bundle).
  expect(await subscribe(discoveryClient(address, creds(both, oldLeaf))).first).not.toBe('data');
}, 30_000);

test('a new stream on the connection authenticated before the root was removed is refused: the handshake verdict is not reused', async () => {
  const oldRoot = generateIssuer(TD);
  const newRoot = generateIssuer(TD);
  const sw = swappableIssuer(withBundle(newRoot, oldRoot, newRoot));
  const { cp, address } = await controlPlane(sw.issuer);
  const c = creds(oldRoot.trustBundlePem + newRoot.trustBundlePem, leafOf(oldRoot));
  // One channel, so every stream rides the one HTTP/2 connection made while the old root was trusted.
  const channel = new grpc.Channel(address, c, CONTROL_PLANE_CHANNEL_OPTIONS);
  closers.push(channel);
  const client = discoveryClient(address, c, channel);
  const before = subscribe(client);
  expect(await before.first).toBe('data');
  const peer = cp.discovery.debugProxies()[0].peer;

  sw.swap(withBundle(newRoot, newRoot));
  expect((await before.ended).code).toBe(grpc.status.UNAUTHENTICATED);
  expect(channel.getConnectivityState(false)).toBe(grpc.connectivityState.READY);
  const after = subscribe(client);
  expect(await after.first).toBe(grpc.status.UNAUTHENTICATED);
  expect((await after.ended).details).toMatch(/does not chain to an anchor of the current trust bundle/);
  expect((await refusals(cp))['untrusted-client-certificate']).toBe(1);
  // The very connection of the first stream (same client address and port).
  expect(refusedLogs().find((l) => l.reason === 'untrusted-client-certificate')).toMatchObject({ code: 'UNAUTHENTICATED', peer });
  expect(channel.getConnectivityState(false)).toBe(grpc.connectivityState.READY);
}, 30_000);

test('Certify renewal by a certificate of a removed root, on a connection made before the removal, is refused; the token still works', async () => {
  const oldRoot = generateIssuer(TD);
  const newRoot = generateIssuer(TD);
  const sw = swappableIssuer(withBundle(newRoot, oldRoot, newRoot));
  const { address } = await controlPlane(sw.issuer);
  const c = creds(oldRoot.trustBundlePem + newRoot.trustBundlePem, leafOf(oldRoot));
  const channel = new grpc.Channel(address, c, CONTROL_PLANE_CHANNEL_OPTIONS);
  closers.push(channel);
  const { Client } = loadIdentityProto();
  const client = new Client(address, c, { channelOverride: channel }) as unknown as grpc.Client & {
    certify(req: CertifyRequest, cb: (e: grpc.ServiceError | null, r?: CertifyResponse) => void): void;
  };
  closers.push(client);
  const certify = (token: string) =>
    new Promise<CertifyResponse | grpc.ServiceError>((res) => {
      const keyPem = generateKeyPair().privateKeyPem;
      client.certify({ identity: WEB, token: Buffer.from(token), csrPem: createCsr(keyPem, WEB), requestedLifetimeMs: 0 }, (e, r) => res(e ?? r!));
    });
  // While the old root is trusted, the certificate alone renews.
  expect(await certify('')).toHaveProperty('certChainPem');

  sw.swap(withBundle(newRoot, newRoot));
  const refused = await certify('');
  expect(refused).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  expect(channel.getConnectivityState(false)).toBe(grpc.connectivityState.READY);
  // A token proves the identity whatever certificate the connection carries.
  expect(await certify(TOKEN)).toHaveProperty('certChainPem');
}, 30_000);

test("a leaf of the previous issuing intermediate still authenticates while its root stays in the bundle (rotating the issuer, not the root)", async () => {
  const root = createRootCa({ trustDomain: TD });
  const issuerOf = (inter: ReturnType<typeof createIntermediateCa>): Issuer => ({
    ca: new CertificateAuthority({ certPem: inter.certPem, keyPem: inter.keyPem, trustDomain: TD }), trustBundlePem: root.certPem, source: 'test',
  });
  const first = issuerOf(createIntermediateCa(root, { trustDomain: TD }));
  const sw = swappableIssuer(first);
  const { cp, address } = await controlPlane(sw.issuer);
  const leaf = leafOf(first);
  sw.swap(issuerOf(createIntermediateCa(root, { trustDomain: TD })));
  const o = subscribe(discoveryClient(address, creds(root.certPem, leaf)));
  expect(await o.first).toBe('data');
  expect(await refusals(cp)).toEqual({});
}, 30_000);
