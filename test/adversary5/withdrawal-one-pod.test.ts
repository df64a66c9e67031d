import type * as grpc from '@grpc/grpc-js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../../contract/discovery.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, type ClientCertificate } from '../../proxy/identity/control-plane-credentials.js';
import { meshedPodYaml } from '../helpers/meshed-pod.js';
import { startTokenControlPlane, type TokenControlPlane } from '../helpers/token-control-plane.js';

/**
 * ADV5-10: one pod alone withdraws endpoints of any service from every proxy in the mesh,
 * defeating `minReporters` (default 2).
 *
 * control-plane/discovery/discovery-server.ts counts a reporter as its client certificate
 * (`spiffeId serial:N`) because "the pod name is only a claim ... one certificate claiming
 * two pods was two reporters and could withdraw an endpoint alone, against minReporters".
 * But Certify renews by certificate without a token (identity-service.ts: a client
 * certificate of the same identity is enough), as often as asked: every call is a new serial.
 *
 * What an attacker in one compromised pod does: asks Certify (with its own certificate) for
 * a second certificate, opens a second discovery stream with it, and reports from both that a
 * healthy endpoint of `cart` is ejected. What happens: two "distinct reporters", the endpoint
 * is withdrawn mesh-wide (every proxy stops sending to it) for the TTL, and the attacker
 * repeats, per endpoint up to maxWithdrawnPercent of every service it is sent. What should
 * happen: one pod (one workload identity on one pod) counts once however many certificates
 * it holds, so nothing is withdrawn on its word alone (docs/resilience.md, withdrawal:
 * "minReporters 2: one proxy's view is its own network path").
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const TOKEN = 'bootstrap-token-web-0123456789abcdef';
// A meshed pod has the sidecar (adv4fix: a pod that only asked for injection is not meshed).
const MESH = `${meshedPodYaml('web-0', 'shop', 'web', { app: 'web' })}---
kind: MeshService
metadata: { name: cart, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
    - { address: 127.0.0.2, port: 8080, proxyPort: 15006, identity: "${CART}" }
    - { address: 127.0.0.3, port: 8080, proxyPort: 15006, identity: "${CART}" }
    - { address: 127.0.0.4, port: 8080, proxyPort: 15006, identity: "${CART}" }
`;

let plane: TokenControlPlane;
const closers: { close(): void }[] = [];

const credentials = (cert?: ClientCertificate): grpc.ChannelCredentials => plane.credentials(cert);
const certify = (creds: grpc.ChannelCredentials, token: string): Promise<ClientCertificate> => plane.certify(WEB, token, { creds });

/** A discovery stream as pod web-0: subscribes, ACKs the first response, then reports `ejected`. */
async function reportFrom(cert: ClientCertificate, ejected: unknown[]): Promise<void> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(plane.address, credentials(cert), CONTROL_PLANE_CHANNEL_OPTIONS);
  closers.push(client);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  stream.write({ subscribe: { identity: { spiffeId: WEB, namespace: 'shop', pod: 'web-0', labels: { app: 'web' } }, services: [], lastVersion: '' } });
  const r = await first;
  stream.write({ ack: { version: r.version, nonce: r.nonce } });
  stream.write({ health: { ejected } } as DiscoveryRequest);
}

beforeAll(async () => {
  plane = await startTokenControlPlane({ prefix: 'wren-adv5-withdraw-', trustDomain: TD, mesh: { 'shop.yaml': MESH }, tokens: [{ token: TOKEN, namespace: 'shop', serviceAccount: 'web' }] });
}, 30_000);

afterAll(async () => {
  for (const c of closers) c.close();
  await plane?.kill();
});

test('ADV5-10: one pod with two certificates from Certify must not count as two reporters', async () => {
  // ADVERSARY: ADV5-10
  const first = await certify(credentials(), TOKEN);
  // The second certificate: a renewal by certificate, no token needed.
  const second = await certify(credentials(first), '');
  const ejected = [{ service: 'cart.shop', servicePort: 80, address: '127.0.0.2', port: 8080, kind: 'outlier-ejection', reason: 'consecutive-5xx', ejectedForMs: 0 }];
  await reportFrom(first, ejected);
  await reportFrom(second, ejected);
  // Both reports are in (the control plane lists two reporters for the endpoint) ...
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !plane.cp.discovery.debugHealth().some((h) => h.reporters.length === 2)) await new Promise((r) => setTimeout(r, 50));
  expect(plane.cp.discovery.debugHealth().map((h) => [h.address, h.reporters.length])).toEqual([['127.0.0.2', 2]]);
  // ... and on main the endpoint is withdrawn from every proxy on this one pod's word (watched for 3 s, so a slow machine cannot hide it).
  const withdrawn = () => (plane.cp.withdrawal.debug() as { withdrawn: { address: string }[] }).withdrawn.map((w) => w.address);
  const until = Date.now() + 3000;
  while (Date.now() < until && withdrawn().length === 0) await new Promise((r) => setTimeout(r, 50));
  expect(withdrawn()).toEqual([]);
});
