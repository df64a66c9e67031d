import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../contract/discovery.js';
import { MAX_STREAMS_PER_POD } from '../control-plane/discovery/discovery-server.js';
import type { ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';
import { startKubeTlsControlPlane, type KubeTlsControlPlane } from './helpers/kube-tls-control-plane.js';

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
 * real grpc-js discovery streams. Since adv59 a pod-bound certificate's stream naming another
 * pod is refused at its first push (`pod-not-certified`), but it is counted from its Subscribe
 * on, before the source has synced: still against the certificate's pod.
 */
const TD = 'cluster.local';
const WEB_SA = `spiffe://${TD}/ns/shop/sa/web-sa`;

let api: FakeKubeApi;
let plane: KubeTlsControlPlane;

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  const web0 = api.apply('pods', podJson('web-0', 'shop', 'web-sa', '10.0.0.1'));
  const web1 = api.apply('pods', podJson('web-1', 'shop', 'web-sa', '10.0.0.2'));
  // The tokens name the pods' own UIDs, as the API server's TokenReview does.
  api.tokens.set('tok-web-0', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: String(web0.metadata.uid) });
  api.tokens.set('tok-web-1', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-1', podUid: String(web1.metadata.uid) });
  plane = await startKubeTlsControlPlane(api, 53);
}, 30_000);

afterAll(async () => {
  await plane?.close();
  await api?.close();
});

const certify = (token: string, presenting?: ClientCertificate): Promise<ClientCertificate> => plane.certify(WEB_SA, token, presenting);

interface Outcome {
  readonly code: grpc.status | null;
  readonly details: string;
  readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
}

/** A discovery stream presenting `cert` and naming `pod`: its first response (code null) or the status it ended with. */
function subscribe(cert: ClientCertificate, pod: string): Promise<Outcome> {
  const stream = plane.stream(cert);
  return new Promise((resolve) => {
    stream.once('data', () => resolve({ code: null, details: '', stream }));
    stream.once('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, stream }));
    stream.write({ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  });
}

async function drop(held: Outcome[]): Promise<void> {
  const before = plane.cp.discovery.subscriberCount;
  for (const o of held) o.stream.cancel();
  for (let i = 0; i < 200 && plane.cp.discovery.subscriberCount > before - held.length; i++) await new Promise((r) => setTimeout(r, 10));
  expect(plane.cp.discovery.subscriberCount).toBe(before - held.length);
}

test('a pod holding 8 streams does not starve a sibling pod of its service account whatever its streams name; it is itself bounded', async () => {
  const web1 = await certify('tok-web-1');
  const web0 = await certify('tok-web-0');
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await subscribe(web1, 'web-1'));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  // web-0's own sidecar: served.
  const own = await subscribe(web0, 'web-0');
  expect({ code: own.code, details: own.details }).toEqual({ code: null, details: '' });
  // The hostile pod's 9th stream, whatever pod it names, is its own pod's 9th (counted at
  // Subscribe, before its claim of web-0 would be checked at the first push).
  for (const pod of ['web-0', 'web-1']) {
    const over = await subscribe(web1, pod);
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(over.details).toMatch(new RegExp(`^the pod this certificate was issued to \\(pod shop/web-sa [0-9a-f]{32}\\) has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}$`));
  }
  // A certificate it renews by its certificate is the same pod's: no 8 more.
  const renewed = await certify('', web1);
  expect((await subscribe(renewed, 'web-1')).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  await drop([...held, own]);
}, 30_000);

test('a StatefulSet pod created again under its name is served; its predecessor\'s streams end pod-not-certified once the new pod is seen', async () => {
  const first = await certify('tok-web-0');
  const held: Outcome[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) held.push(await subscribe(first, 'web-0'));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  const ended = held.map((o) => new Promise<grpc.ServiceError>((resolve) => o.stream.once('error', resolve)));
  // web-0 deleted and created again by its StatefulSet: the same name, another UID. The
  // predecessor's connections are not yet found dead; the new pod certifies and subscribes
  // (retrying until the watch has the new pod, as a proxy does). The predecessor's streams are
  // counted against their own pod instance, so they never held the new pod's places, and since
  // adv66 they end (PERMISSION_DENIED pod-not-certified) when the source sees the new pod.
  api.delete('pods', 'shop', 'web-0');
  const again = api.apply('pods', podJson('web-0', 'shop', 'web-sa', '10.0.0.3'));
  api.tokens.set('tok-web-0-again', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: String(again.metadata.uid) });
  const second = await certify('tok-web-0-again');
  let o = await subscribe(second, 'web-0');
  for (let i = 0; i < 100 && o.code === grpc.status.PERMISSION_DENIED; i++) {
    await new Promise((r) => setTimeout(r, 20));
    o = await subscribe(second, 'web-0');
  }
  expect({ code: o.code, details: o.details }).toEqual({ code: null, details: '' });
  expect((await Promise.all(ended)).map((e) => e.code)).toEqual(held.map(() => grpc.status.PERMISSION_DENIED));
  await drop([o]);
}, 30_000);
