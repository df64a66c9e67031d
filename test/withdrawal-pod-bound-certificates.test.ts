import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { waitFor } from './control-plane-harness.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';

/**
 * Health-based withdrawal counts reporters: a pod the view knows, run by the certificate's
 * service account, was a reporter by the pod its stream claims. A Subscribe may claim any
 * pod of that service account, and Certify signs a pod up to five certificates at once, so
 * one hostile pod with two certificates claiming two sibling pods was two reporters and
 * withdrew a healthy endpoint from every proxy alone (minReporters 2). A certificate now
 * carries the pod instance it was signed for (its Certify limit key), and that is the
 * reporter (adv53). Real control plane on the fake API server (Kubernetes source,
 * TokenReview with pod-bound tokens), real grpc-js streams and HealthReports.
 */
const TD = 'cluster.local';
const WEB_SA = `spiffe://${TD}/ns/shop/sa/web-sa`;

let api: FakeKubeApi;
let cp: ControlPlane;
let issuer: Issuer;
let address: string;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  for (const [i, pod] of ['web-0', 'web-1', 'web-2'].entries()) {
    api.apply('pods', podJson(pod, 'shop', 'web-sa', `10.0.0.${i + 1}`));
    api.tokens.set(`tok-${pod}`, { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod, podUid: `uid-${pod}` });
  }
  api.apply('services', serviceJson('api', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]));
  api.apply('endpointslices', endpointSliceJson('api-1', 'shop', 'api', [{ name: 'http', port: 8080 }], [{ ip: '10.0.1.1' }, { ip: '10.0.1.2' }, { ip: '10.0.1.3' }]));
  issuer = generateIssuer(TD);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(531), logger: silentLogger,
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    identity: { issuer, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }) },
    transport: 'tls',
  });
  await cp.whenReady();
  address = `127.0.0.1:${cp.grpcPort}`;
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.kill();
  await api?.close();
});

function credentials(cert?: ClientCertificate): grpc.ChannelCredentials {
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  if (cert) presentCertificate(creds, cert);
  return creds;
}

async function certify(token: string): Promise<ClientCertificate> {
  const keyPem = generateKeyPair().privateKeyPem;
  const c = new CertifyClient(address, credentials(), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    const r = await c.certify({ identity: WEB_SA, token: Buffer.from(token), csrPem: createCsr(keyPem, WEB_SA), requestedLifetimeMs: 0 }, 10_000);
    return { keyPem, certChainPem: r.certChainPem };
  } finally {
    c.close();
  }
}

/** An authenticated stream claiming `pod`, its first snapshot ACKed (so the health report's endpoints were sent to it). */
async function stream(cert: ClientCertificate, pod: string): Promise<grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, credentials(cert), CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(client);
  const s = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  await new Promise<void>((resolve, reject) => {
    s.once('data', (r: DiscoveryResponse) => {
      s.write({ ack: { version: r.version, nonce: r.nonce } });
      resolve();
    });
    s.once('error', reject);
    s.write({ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  return s;
}

/** The reporter a pod's certificates are: the pod instance's Certify key (certify-limiter.ts podKey, a SHA-256 of namespace, name and UID). */
const podReporter = (pod: string): string => `${WEB_SA} certified:pod shop/web-sa ${createHash('sha256').update(`pod shop/${pod} uid uid-${pod}`).digest('hex').slice(0, 32)}`;

const lie = { health: { ejected: [{ service: 'api.shop', servicePort: 80, address: '10.0.1.1', port: 8080, kind: 'outlier-ejection' as const, reason: 'consecutive-5xx', ejectedForMs: 500 }] } };

test('one pod with two certificates claiming two sibling pods is one reporter: the endpoint is withdrawn only when another pod reports it too', async () => {
  // web-1 is hostile: two certificates from its own token (Certify's burst), one stream each, claiming web-0 and web-1.
  const [a, b] = await Promise.all([certify('tok-web-1'), certify('tok-web-1')]);
  const s1 = await stream(a, 'web-0');
  const s2 = await stream(b, 'web-1');
  s1.write(lie);
  s2.write(lie);
  await waitFor(() => cp.discovery.debugHealth().length > 0 && JSON.stringify(cp.discovery.debugHealth()).includes('shop/web-1') && JSON.stringify(cp.discovery.debugHealth()).includes('shop/web-0'), 'both reports recorded');
  // An honest pod (web-2, its own certificate) sees the same failure.
  const s3 = await stream(await certify('tok-web-2'), 'web-2');
  s3.write(lie);
  await waitFor(() => cp.withdrawal.debug().decisions.some((d) => d.action === 'withdrawn'), 'a withdrawal');
  // Before: withdrawn on web-1's word alone, its two streams the two reporters (…/sa/web-sa pod:shop/web-0, pod:shop/web-1).
  const first = cp.withdrawal.debug().decisions.find((d) => d.action === 'withdrawn')!;
  // Now: web-1 (whichever pods its streams claim) and web-2, each the pod instance its certificates were signed for.
  expect(first.reporters).toEqual([podReporter('web-1'), podReporter('web-2')].sort());
  for (const s of [s1, s2, s3]) s.cancel();
}, 30_000);
