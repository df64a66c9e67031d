import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { MAX_STREAMS_PER_POD } from '../control-plane/discovery/discovery-server.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';

/**
 * MAX_STREAMS_PER_POD over TLS counted a stream against the pod its Subscribe names, and a
 * Subscribe may name any pod of its certificate's service account (nothing tells which of
 * them holds the key). So one pod's sidecar (a hostile workload) opened 8 streams naming a
 * sibling pod and the sibling's own sidecar was refused `streams-per-pod` for as long as
 * those streams stayed open: it never got a config. And a StatefulSet's pod created again
 * under its name was refused while its predecessor's streams still counted (adv53). The
 * streams now count against the pod instance the certificate was signed for (its Certify
 * key: a digest of namespace, name and UID). Real control plane with the Kubernetes source
 * on the fake API server, certificates from Certify with pod-bound TokenReview tokens,
 * real grpc-js discovery streams.
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
  api.apply('pods', podJson('web-0', 'shop', 'web-sa', '10.0.0.1'));
  api.apply('pods', podJson('web-1', 'shop', 'web-sa', '10.0.0.2'));
  api.tokens.set('tok-web-0', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: 'uid-web-0-first' });
  api.tokens.set('tok-web-1', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-1', podUid: 'uid-web-1' });
  // web-0 deleted and created again by its StatefulSet: the same name, another UID.
  api.tokens.set('tok-web-0-again', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: 'uid-web-0-second' });
  issuer = generateIssuer(TD);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(53),
    logger: createLogger({ level: 'error', sink: () => undefined }),
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

/** A certificate from Certify with `token` (bound to a pod by the fake API server's TokenReview). */
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

interface Outcome {
  readonly code: grpc.status | null;
  readonly details: string;
  readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
}

/** A discovery stream presenting `cert` and naming `pod`: its first response (code null) or the status it ended with. */
function subscribe(cert: ClientCertificate, pod: string): Promise<Outcome> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, credentials(cert), CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(client);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  return new Promise((resolve) => {
    stream.once('data', () => resolve({ code: null, details: '', stream }));
    stream.once('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, stream }));
    stream.write({ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  });
}

async function drop(held: Outcome[]): Promise<void> {
  const before = cp.discovery.subscriberCount;
  for (const o of held) o.stream.cancel();
  for (let i = 0; i < 200 && cp.discovery.subscriberCount > before - held.length; i++) await new Promise((r) => setTimeout(r, 10));
  expect(cp.discovery.subscriberCount).toBe(before - held.length);
}

test('a pod holding 8 streams that name a sibling pod of its service account does not starve the sibling; it is itself bounded', async () => {
  const web1 = await certify('tok-web-1');
  const web0 = await certify('tok-web-0');
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await subscribe(web1, 'web-0'));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  // web-0's own sidecar: served (before: `pod shop/web-0 has 8 discovery streams open`).
  const own = await subscribe(web0, 'web-0');
  expect({ code: own.code, details: own.details }).toEqual({ code: null, details: '' });
  // The hostile pod's 9th stream, whatever pod it names, is its own pod's 9th.
  for (const pod of ['web-0', 'web-1']) {
    const over = await subscribe(web1, pod);
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(over.details).toMatch(new RegExp(`^the pod this certificate was issued to \\(pod shop/web-sa [0-9a-f]{32}\\) has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}$`));
  }
  // A certificate it renews by its certificate is the same pod's: no 8 more.
  const renewed = await (async () => {
    const keyPem = generateKeyPair().privateKeyPem;
    const c = new CertifyClient(address, credentials(web1), CONTROL_PLANE_CHANNEL_OPTIONS);
    try {
      const r = await c.certify({ identity: WEB_SA, token: Buffer.alloc(0), csrPem: createCsr(keyPem, WEB_SA), requestedLifetimeMs: 0 }, 10_000);
      return { keyPem, certChainPem: r.certChainPem };
    } finally {
      c.close();
    }
  })();
  expect((await subscribe(renewed, 'web-1')).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  await drop([...held, own]);
}, 30_000);

test('a StatefulSet pod created again under its name is served while its predecessor\'s streams still count', async () => {
  const first = await certify('tok-web-0');
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await subscribe(first, 'web-0'));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  // The predecessor's connections are not yet found dead; the new pod (another UID) certifies and subscribes.
  const second = await certify('tok-web-0-again');
  const o = await subscribe(second, 'web-0');
  expect({ code: o.code, details: o.details }).toEqual({ code: null, details: '' });
  await drop([...held, o]);
}, 30_000);
