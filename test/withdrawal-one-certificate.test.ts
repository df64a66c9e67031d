import type * as grpc from '@grpc/grpc-js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';
import { startTokenControlPlane, type TokenControlPlane } from './helpers/token-control-plane.js';

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
const MESH = `${meshedPodYaml('web-0', 'shop', 'web', { app: 'web' })}---
${meshedPodYaml('web-1', 'shop', 'web', { app: 'web' })}---
kind: MeshService
metadata: { name: api, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
    - { address: 127.0.0.11, port: 8080, proxyPort: 15006, identity: "${API}" }
    - { address: 127.0.0.12, port: 8080, proxyPort: 15006, identity: "${API}" }
`;

let plane: TokenControlPlane;
const clients: grpc.Client[] = [];
let web: ClientCertificate;

beforeAll(async () => {
  const token = 'bootstrap-token-web-0123456789abcdef';
  plane = await startTokenControlPlane({ prefix: 'wren-adv3-reporters-', trustDomain: TD, mesh: { 'shop.yaml': MESH }, tokens: [{ token, namespace: 'shop', serviceAccount: 'web' }] });
  web = await plane.certify(WEB, token);
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await plane?.kill();
});

/** A discovery stream with the one stolen certificate, subscribed as `pod`; resolves after its first snapshot. */
async function stream(pod: string): Promise<grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(plane.address, plane.credentials(web), CONTROL_PLANE_CHANNEL_OPTIONS);
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

const withdrawals = async () => Number(/^wren_cp_endpoint_withdrawals_total(?:\{[^}]*\})? (\d+)/m.exec(await plane.cp.metrics.registry.metrics())?.[1] ?? 0);

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
