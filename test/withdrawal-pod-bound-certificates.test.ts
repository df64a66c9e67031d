import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../contract/discovery.js';
import type { ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { waitFor } from './control-plane-harness.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';
import { startKubeTlsControlPlane, type KubeTlsControlPlane } from './helpers/kube-tls-control-plane.js';

/**
 * Health-based withdrawal counts reporters: a pod the view knows, run by the certificate's
 * service account, was a reporter by the pod its stream claims. A Subscribe may claim any
 * pod of that service account, and Certify signs a pod up to five certificates at once, so
 * one hostile pod with two certificates claiming two sibling pods was two reporters and
 * withdrew a healthy endpoint from every proxy alone (minReporters 2). A certificate now
 * carries the pod instance it was signed for (its Certify limit key), and that is the
 * reporter (adv53). Real control plane on the fake API server (Kubernetes source,
 * TokenReview with pod-bound tokens), real grpc-js streams and HealthReports. Since adv59 a
 * pod-bound certificate cannot claim a sibling at all (`pod-not-certified`); a pod's several
 * certificates claiming their own pod are still one reporter.
 */
const TD = 'cluster.local';
const WEB_SA = `spiffe://${TD}/ns/shop/sa/web-sa`;

let api: FakeKubeApi;
let plane: KubeTlsControlPlane;

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  for (const [i, pod] of ['web-0', 'web-1', 'web-2'].entries()) {
    // The pod's UID as its token names it (TokenReview's pod-uid): the pod instance a certificate is bound to.
    const p = podJson(pod, 'shop', 'web-sa', `10.0.0.${i + 1}`) as { metadata: Record<string, unknown> };
    p.metadata.uid = `uid-${pod}`;
    api.apply('pods', p);
    api.tokens.set(`tok-${pod}`, { username: 'system:serviceaccount:shop:web-sa', audiences: ['wren-identity'], pod, podUid: `uid-${pod}` });
  }
  api.apply('services', serviceJson('api', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]));
  api.apply('endpointslices', endpointSliceJson('api-1', 'shop', 'api', [{ name: 'http', port: 8080 }], [{ ip: '10.0.1.1' }, { ip: '10.0.1.2' }, { ip: '10.0.1.3' }]));
  plane = await startKubeTlsControlPlane(api, 531);
}, 30_000);

afterAll(async () => {
  await plane?.close();
  await api?.close();
});

const certify = (token: string): Promise<ClientCertificate> => plane.certify(WEB_SA, token);

/** An authenticated stream claiming `pod`, its first snapshot ACKed (so the health report's endpoints were sent to it). */
async function stream(cert: ClientCertificate, pod: string): Promise<grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>> {
  const s = plane.stream(cert);
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

test('one pod with two certificates is one reporter, and cannot claim a sibling: the endpoint is withdrawn only when another pod reports it too', async () => {
  // web-1 is hostile: two certificates from its own token (Certify's burst), one stream each.
  const [a, b] = await Promise.all([certify('tok-web-1'), certify('tok-web-1')]);
  // Claiming its sibling web-0 is refused (adv59: before, it was served, its reports filed under web-0).
  await expect(stream(a, 'web-0')).rejects.toMatchObject({ details: expect.stringMatching(/^the client certificate was issued to another pod than shop\/web-0/) });
  const s1 = await stream(a, 'web-1');
  const s2 = await stream(b, 'web-1');
  s1.write(lie);
  s2.write(lie);
  await waitFor(() => plane.cp.discovery.debugHealth()[0]?.reporters.length === 2, 'both reports recorded');
  // An honest pod (web-2, its own certificate) sees the same failure.
  const s3 = await stream(await certify('tok-web-2'), 'web-2');
  s3.write(lie);
  await waitFor(() => plane.cp.withdrawal.debug().decisions.some((d) => d.action === 'withdrawn'), 'a withdrawal');
  // Before: withdrawn on web-1's word alone, its two streams the two reporters (…/sa/web-sa pod:shop/web-0, pod:shop/web-1).
  const first = plane.cp.withdrawal.debug().decisions.find((d) => d.action === 'withdrawn')!;
  // Now: web-1 (both its certificates) and web-2, each the pod instance its certificates were signed for.
  expect(first.reporters).toEqual([podReporter('web-1'), podReporter('web-2')].sort());
  for (const s of [s1, s2, s3]) s.cancel();
}, 30_000);
