import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../contract/discovery.js';
import type { ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';
import { startKubeTlsControlPlane, type KubeTlsControlPlane } from './helpers/kube-tls-control-plane.js';

/**
 * A certificate Certify signed for a token bound to pod web-0 proves web-0's service account,
 * and a Subscribe was checked against that service account only: web-0's sidecar could
 * subscribe naming its sibling web-1 (same service account, same namespace), receive web-1's
 * inbound policy, and have its stats and health reports filed under web-1 (adv59). A
 * certificate bound to a pod now subscribes for that pod only (the instance: its UID), refused
 * PERMISSION_DENIED `pod-not-certified` otherwise. Real control plane with the Kubernetes
 * source on the fake API server, certificates from Certify with pod-bound TokenReview tokens,
 * real grpc-js discovery streams.
 */
const TD = 'cluster.local';
const WEB_SA = `spiffe://${TD}/ns/shop/sa/web-sa`;

let api: FakeKubeApi;
let plane: KubeTlsControlPlane;

const uidOf = (o: { metadata: Record<string, unknown> }): string => String(o.metadata.uid);

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  const web0 = api.apply('pods', podJson('web-0', 'shop', 'web-sa', '10.0.0.1'));
  const web1 = api.apply('pods', podJson('web-1', 'shop', 'web-sa', '10.0.0.2'));
  api.tokens.set('tok-web-0', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: uidOf(web0) });
  api.tokens.set('tok-web-1', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-1', podUid: uidOf(web1) });
  plane = await startKubeTlsControlPlane(api, 59);
}, 30_000);

afterAll(async () => {
  await plane?.close();
  await api?.close();
});

interface Outcome {
  readonly code: grpc.status | null;
  readonly details: string;
  readonly response: DiscoveryResponse | null;
  readonly stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
}

function subscribe(cert: ClientCertificate, pod: string): Promise<Outcome> {
  const stream = plane.stream(cert);
  return new Promise((resolve) => {
    stream.once('data', (response: DiscoveryResponse) => resolve({ code: null, details: '', response, stream }));
    stream.once('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, response: null, stream }));
    stream.write({ subscribe: { identity: { spiffeId: WEB_SA, namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  });
}

async function refused(reason: string): Promise<number> {
  const text = await plane.cp.metrics.registry.metrics();
  return Number(new RegExp(`^wren_cp_discovery_refused_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

test('a sidecar whose certificate is bound to pod web-0 cannot subscribe as its sibling web-1; each pod\'s own is served', async () => {
  const web0 = await plane.certify(WEB_SA, 'tok-web-0');
  const web1 = await plane.certify(WEB_SA, 'tok-web-1');
  const before = await refused('pod-not-certified');
  const sibling = await subscribe(web0, 'web-1');
  expect({ code: sibling.code, details: sibling.details }).toEqual({
    code: grpc.status.PERMISSION_DENIED,
    details: 'the client certificate was issued to another pod than shop/web-1 (or to an earlier pod of that name): a certificate bound to a pod may subscribe for that pod only',
  });
  expect(sibling.response).toBeNull();
  expect(await refused('pod-not-certified')).toBe(before + 1);
  // A certificate it renews by its certificate is still web-0's.
  const renewed = await plane.certify(WEB_SA, '', web0);
  expect((await subscribe(renewed, 'web-1')).code).toBe(grpc.status.PERMISSION_DENIED);
  expect(await refused('pod-not-certified')).toBe(before + 2);
  const own0 = await subscribe(web0, 'web-0');
  const own1 = await subscribe(web1, 'web-1');
  expect([own0.code, own1.code]).toEqual([null, null]);
  expect([own0.response?.full, own1.response?.full]).toEqual([true, true]);
  own0.stream.cancel();
  own1.stream.cancel();
}, 30_000);

test('a StatefulSet pod created again under its name (another UID): its predecessor\'s certificate is not the new pod\'s', async () => {
  const old = await plane.certify(WEB_SA, 'tok-web-0');
  api.delete('pods', 'shop', 'web-0');
  const again = api.apply('pods', podJson('web-0', 'shop', 'web-sa', '10.0.0.3'));
  api.tokens.set('tok-web-0-again', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: uidOf(again) });
  // Until the watch has the new pod, the new certificate's stream may be refused too: wait for the new pod's own to be served.
  const fresh = await plane.certify(WEB_SA, 'tok-web-0-again');
  let own: Outcome | null = null;
  for (let i = 0; i < 100 && own?.code !== null; i++) {
    own = await subscribe(fresh, 'web-0');
    if (own.code !== null) await new Promise((r) => setTimeout(r, 20));
  }
  expect(own?.code).toBeNull();
  const stale = await subscribe(old, 'web-0');
  expect({ code: stale.code, details: stale.details }).toEqual({
    code: grpc.status.PERMISSION_DENIED,
    details: 'the client certificate was issued to another pod than shop/web-0 (or to an earlier pod of that name): a certificate bound to a pod may subscribe for that pod only',
  });
  own?.stream.cancel();
}, 30_000);

test('an open stream of pod web-1 ends PERMISSION_DENIED pod-not-certified when web-1 is deleted and created again under its name (another UID), counted; web-0\'s stays open', async () => {
  // Last in the file: it replaces web-1. web-0 is whichever instance the tests before left.
  api.tokens.set('tok-web-0-now', { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod: 'web-0', podUid: uidOf(api.get('pods', 'shop', 'web-0')!) });
  const web0 = await plane.certify(WEB_SA, 'tok-web-0-now');
  const web1 = await plane.certify(WEB_SA, 'tok-web-1');
  const own0 = await subscribe(web0, 'web-0');
  const own1 = await subscribe(web1, 'web-1');
  expect([own0.code, own1.code]).toEqual([null, null]);
  const ended1 = new Promise<grpc.ServiceError>((resolve) => own1.stream.once('error', resolve));
  const before = await refused('pod-not-certified');
  const open = plane.cp.discovery.subscriberCount;
  // The pod is deleted and created again (a StatefulSet's): its UID changes, its name does not.
  const oldUid = uidOf(api.get('pods', 'shop', 'web-1')!);
  api.delete('pods', 'shop', 'web-1');
  const again = api.apply('pods', podJson('web-1', 'shop', 'web-sa', '10.0.0.5'));
  expect(uidOf(again)).not.toBe(oldUid);
  let timer: NodeJS.Timeout | undefined;
  const e = await Promise.race<{ code: number; details: string }>([ended1, new Promise((r) => (timer = setTimeout(() => r({ code: -1, details: 'still open after 5 s' }), 5_000)))]);
  clearTimeout(timer);
  expect({ code: e.code, details: e.details }).toEqual({
    code: grpc.status.PERMISSION_DENIED,
    details: 'the client certificate was issued to another pod than shop/web-1 (or to an earlier pod of that name): a certificate bound to a pod may subscribe for that pod only',
  });
  // Only web-1's: web-0's pod did not change, and its stream stays (it is re-checked in the same commit, or never).
  expect(await refused('pod-not-certified')).toBe(before + 1);
  expect(plane.cp.discovery.subscriberCount).toBe(open - 1);
  own0.stream.cancel();
}, 30_000);
