import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { withSidecarYaml } from './helpers/meshed-pod.js';

/**
 * Found by the adversary review (cp-one-identity-many-reporters).
 *
 * What an attacker does: it holds ONE workload certificate (the `web` service account's:
 * one compromised pod, web-0). It opens two authenticated discovery streams with that
 * certificate, one subscribing as pod web-0 and one as pod web-1 (a sibling replica of the
 * same service account, which the control plane accepts: checkPodClaim only checks that
 * the pod runs as the certificate's service account), and on both sends a HealthReport
 * saying a healthy `api` endpoint is ejected.
 *
 * What happens: the control plane counts "spiffeId namespace/pod" as the reporter
 * (discovery-server.ts onHealthReport), so the two streams are two distinct reporters;
 * minReporters (2) is met and the endpoint is withdrawn from every proxy in the mesh on
 * the word of one certificate. (In a directory mesh, a pod the source does not list is
 * let through with any name, so one certificate is any number of reporters.)
 *
 * What should happen: issue #14.2: "A single lying reporter cannot withdraw anything";
 * withdrawal-settings.ts: minReporters 2 because "one proxy's view is ... a lying client;
 * two distinct reporters must agree". A pod name is a claim the certificate does not prove
 * (a SPIFFE ID names a service account, not a pod), so reporters must be counted by what
 * the certificate proves (its identity), or the pod claim bound to something it proves.
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const API = `spiffe://${TD}/ns/shop/sa/api`;
const MESH = `${withSidecarYaml(`apiVersion: v1
kind: Pod
metadata: { name: web-0, namespace: shop, labels: { app: web, wren.io/inject: enabled } }
spec: { serviceAccountName: web, containers: [{ name: app, image: x }] }
`)}---
${withSidecarYaml(`apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web, wren.io/inject: enabled } }
spec: { serviceAccountName: web, containers: [{ name: app, image: x }] }
`)}---
kind: MeshService
metadata: { name: api, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
    - { address: 127.0.0.11, port: 8080, proxyPort: 15006, identity: "${API}" }
    - { address: 127.0.0.12, port: 8080, proxyPort: 15006, identity: "${API}" }
`;

let dir: string;
let issuer: Issuer;
let cp: ControlPlane;
let address: string;
const clients: grpc.Client[] = [];
let web: ClientCertificate;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv3-reporters-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'shop.yaml'), MESH);
  await writeFile(join(dir, 'tokens.yaml'), 'tokens:\n  - { token: bootstrap-token-web-0123456789abcdef, namespace: shop, serviceAccount: web }\n');
  issuer = generateIssuer(TD);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(3), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
  await cp.whenReady();
  address = `127.0.0.1:${cp.grpcPort}`;
  const keyPem = generateKeyPair().privateKeyPem;
  const c = new CertifyClient(address, controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD)), CONTROL_PLANE_CHANNEL_OPTIONS);
  const r = await c.certify({ identity: WEB, token: Buffer.from('bootstrap-token-web-0123456789abcdef'), csrPem: createCsr(keyPem, WEB), requestedLifetimeMs: 0 }, 10_000);
  c.close();
  web = { keyPem, certChainPem: r.certChainPem };
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

/** A discovery stream with the one stolen certificate, subscribed as `pod`; resolves after its first snapshot. */
async function stream(pod: string): Promise<grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>> {
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  presentCertificate(creds, web);
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(client);
  const s = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  await new Promise<void>((resolve, reject) => {
    s.once('data', (r: DiscoveryResponse) => {
      s.write({ ack: { version: r.version, nonce: r.nonce } });
      resolve();
    });
    s.once('error', reject);
    s.write({ subscribe: { identity: { spiffeId: WEB, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  return s;
}

const withdrawals = async () => Number(/^wren_cp_endpoint_withdrawals_total(?:\{[^}]*\})? (\d+)/m.exec(await cp.metrics.registry.metrics())?.[1] ?? 0);

test('one certificate on two streams claiming two pods of its service account is one reporter: nothing is withdrawn', async () => {
  const [a, b] = await Promise.all([stream('web-0'), stream('web-1')]);
  const lie = { health: { ejected: [{ service: 'api.shop', servicePort: 80, address: '127.0.0.11', port: 8080, kind: 'outlier-ejection' as const, reason: 'consecutive-5xx', ejectedForMs: 500 }] } };
  a.write(lie);
  b.write(lie);
  await new Promise((r) => setTimeout(r, 1500));
  // Today: 1 (127.0.0.11:8080 withdrawn mesh-wide, reporters "…/sa/web shop/web-0" and "…/sa/web shop/web-1").
  expect(await withdrawals()).toBe(0);
  a.cancel();
  b.cancel();
});

test('the same when the second stream comes after the first one reported: its report is re-filed under the certificate at once', async () => {
  // Pods known to the view are reporters by pod (ADV5-10: one pod, many certificates, counts once); a certificate
  // speaking for a second pod turns both streams' reports into the certificate's, without waiting for the first to report again.
  const before = await withdrawals();
  const lie = { health: { ejected: [{ service: 'api.shop', servicePort: 80, address: '127.0.0.12', port: 8080, kind: 'outlier-ejection' as const, reason: 'consecutive-5xx', ejectedForMs: 500 }] } };
  const a = await stream('web-0');
  a.write(lie);
  await new Promise((r) => setTimeout(r, 300));
  const b = await stream('web-1');
  b.write(lie);
  await new Promise((r) => setTimeout(r, 1500));
  expect(await withdrawals()).toBe(before);
  a.cancel();
  b.cancel();
});
