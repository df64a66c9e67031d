import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { swappableIssuer, waitFor } from './control-plane-harness.js';

/**
 * A proxy that NACKs must not make the control plane resend in a loop (xDS: a NACKed
 * resource is sent again only when it changes). A real control plane (a CA, so responses
 * carry its trust state) and a raw discovery stream on loopback that answers each response
 * as the test says.
 */
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const SUBSCRIBE = { subscribe: { identity: { spiffeId: WEB, namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } } as DiscoveryRequest;
const service = (port: number): string =>
  `kind: MeshService\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1 }]\n  endpoints: [{ address: 127.0.0.1, port: ${port} }]\n`;

let dir: string;
let cp: ControlPlane;
let sw: ReturnType<typeof swappableIssuer>;
const logs: string[] = [];
const closers: { close(): void }[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-cp-nack-loops-'));
  await writeFile(join(dir, 'tokens.yaml'), 'tokens:\n  - { token: bootstrap-token-web-0123456789abcdef, namespace: shop, serviceAccount: web }\n');
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'web.yaml'), service(8080));
  sw = swappableIssuer(generateIssuer('cluster.local'));
  logs.length = 0;
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7),
    logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer: sw.issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
  });
  await cp.whenReady();
});

afterEach(async () => {
  for (const c of closers.splice(0)) c.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

type Answer = (r: DiscoveryResponse) => DiscoveryRequest | null;

/** A discovery stream whose answer to each response `answer` decides (null: none). */
function open(answer: Answer): { responses: DiscoveryResponse[]; stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> } {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  closers.push(client);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  const responses: DiscoveryResponse[] = [];
  stream.on('error', () => undefined);
  stream.on('data', (r: DiscoveryResponse) => {
    responses.push(r);
    const a = answer(r);
    if (a) stream.write(a);
  });
  stream.write(SUBSCRIBE);
  return { responses, stream };
}

const ack = (r: DiscoveryResponse): DiscoveryRequest => ({ ack: { version: r.version, nonce: r.nonce } });
const nack = (r: DiscoveryResponse, resync = false): DiscoveryRequest => ({ nack: { version: r.version, nonce: r.nonce, errorDetail: 'refused', resync } });
const carriesConfig = (r: DiscoveryResponse): boolean => r.full || r.services.length > 0 || r.removedServices.length > 0 || r.endpointDeltas.length > 0;

async function nacksTotal(): Promise<number> {
  const m = /^wren_cp_nacks_total (\d+)/m.exec(await cp.metrics.registry.metrics());
  return m ? Number(m[1]) : 0;
}

test('a trust state the proxy NACKs on its own is not resent in a loop; the next config change goes out without it and is taken', async () => {
  // ACK the first snapshot; from then on refuse whatever carries the trust state, take the rest.
  let refuseTrust = false;
  const { responses } = open((r) => (refuseTrust && r.trustBundle ? nack(r) : ack(r)));
  await waitFor(() => responses.length === 1 && cp.discovery.debugProxies()[0]?.ackedVersion === responses[0].version, 'the first snapshot ACKed');
  expect(responses[0].trustBundle).toBeTruthy();
  refuseTrust = true;
  // The CA's state changes (a new root): an otherwise empty delta carries it.
  sw.swap(generateIssuer('cluster.local'));
  await waitFor(() => responses.length >= 2, 'the trust-only delta');
  // Then a config change: the proxy must get it, whatever the control plane sent before.
  await writeFile(join(dir, 'mesh', 'web.yaml'), service(8081));
  const change = await waitFor(() => responses.find((r) => carriesConfig(r) && !r.full), 'the delta with the new endpoint');
  const between = responses.slice(1, responses.indexOf(change));
  expect(between.map((r) => [carriesConfig(r), Boolean(r.trustBundle)])).toEqual([[false, true]]);
  // The delta does not carry the refused state, so the proxy takes it.
  expect(change.trustBundle ?? null).toBeNull();
  await waitFor(() => cp.discovery.debugProxies()[0]?.ackedVersion === change.version, 'the delta ACKed');
  expect(await nacksTotal()).toBe(1);
  expect(logs.filter((l) => l.includes('proxy NACKed a discovery response'))).toHaveLength(1);
  // Another trust state is offered again.
  refuseTrust = false;
  const before = responses.length;
  sw.swap(generateIssuer('cluster.local'));
  const next = await waitFor(() => responses.slice(before).find((r) => r.trustBundle), 'the next trust state');
  expect(carriesConfig(next)).toBe(false);
});

test('a full snapshot NACKed with resync is not resent at once; the next change goes out as a full snapshot', async () => {
  // A stream that NACKs every response asking for a resync (a broken or hostile proxy).
  const { responses } = open((r) => nack(r, true));
  await waitFor(async () => responses.length === 1 && (await nacksTotal()) === 1, 'the first snapshot NACKed');
  expect(responses[0].full).toBe(true);
  await writeFile(join(dir, 'mesh', 'web.yaml'), service(8081));
  const next = await waitFor(() => responses.find((r) => r.version !== responses[0].version), 'the snapshot of the change');
  // Nothing went out between the NACK and the change: not the NACKed snapshot again.
  expect(responses.indexOf(next)).toBe(1);
  expect(next.full).toBe(true);
  expect(next.services[0].ports[0].endpoints.map((e) => e.port)).toEqual([8081]);
  await waitFor(async () => (await nacksTotal()) === 2, 'the second NACK');
  expect(cp.discovery.debugProxies()[0]).toMatchObject({ nacks: 2, ackedVersion: null });
});
