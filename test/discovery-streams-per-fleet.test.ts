import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { DEFAULT_MAX_STREAMS_PER_FLEET, MAX_STREAMS_PER_POD } from '../control-plane/discovery/discovery-server.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../proxy/identity/control-plane-credentials.js';
import { waitFor } from './control-plane-harness.js';

/**
 * Every certificate from Certify holds at most MAX_STREAMS_PER_POD discovery streams, and a
 * bootstrap token (one secret a fleet of VMs shares) gets a new certificate per Certify (a
 * burst of 20, then one a second): one holder of the token minted certificates for 8 streams
 * each, without bound (adv59). The certificates of one fleet (a bootstrap token, or a service
 * account's tokens bound to no pod) now hold maxDiscoveryStreamsPerFleet streams together
 * (--discovery-max-streams-per-fleet, default 256), refused RESOURCE_EXHAUSTED
 * `streams-per-fleet` past it. Real TLS control plane (a directory mesh that lists no pods, so
 * any pod name is let through), certificates from Certify with bootstrap tokens, real grpc-js
 * discovery streams.
 */
const TD = 'cluster.local';
const VM = `spiffe://${TD}/ns/vms/sa/vm`;
const OTHER = `spiffe://${TD}/ns/vms/sa/batch`;
const VM_TOKEN = 'bootstrap-token-vm-fleet-0123456789';
const VM_TOKEN_2 = 'bootstrap-token-vm-fleet-second-0123456789';
const BATCH_TOKEN = 'bootstrap-token-batch-0123456789';
const MAX = 4;

let dir: string;
let issuer: Issuer;
let cp: ControlPlane;
let address: string;
const clients: grpc.Client[] = [];

const credentials = (cert?: ClientCertificate): grpc.ChannelCredentials => {
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  if (cert) presentCertificate(creds, cert);
  return creds;
};

async function certify(id: string, token: string, presenting?: ClientCertificate): Promise<ClientCertificate> {
  const keyPem = generateKeyPair().privateKeyPem;
  const c = new CertifyClient(address, credentials(presenting), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    const r = await c.certify({ identity: id, token: Buffer.from(token), csrPem: createCsr(keyPem, id), requestedLifetimeMs: 0 }, 10_000);
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

function subscribe(cert: ClientCertificate, spiffeId: string, pod: string): Promise<Outcome> {
  const { Client } = loadDiscoveryProto();
  const client = new Client(address, credentials(cert), CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(client);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  return new Promise((resolve) => {
    stream.once('data', () => resolve({ code: null, details: '', stream }));
    stream.once('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, stream }));
    stream.write({ subscribe: { identity: { spiffeId, namespace: 'vms', pod, labels: {} }, services: [], lastVersion: '' } });
  });
}

const refused = async (): Promise<number> => {
  const m = await cp.metrics.registry.getSingleMetric('wren_cp_discovery_refused_total')!.get();
  return m.values.find((v) => v.labels.reason === 'streams-per-fleet')?.value ?? 0;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-fleet-streams-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'empty.yaml'), '');
  await writeFile(join(dir, 'tokens.yaml'), `tokens:
  - { token: ${VM_TOKEN}, namespace: vms, serviceAccount: vm }
  - { token: ${VM_TOKEN_2}, namespace: vms, serviceAccount: vm }
  - { token: ${BATCH_TOKEN}, namespace: vms, serviceAccount: batch }
`);
  issuer = generateIssuer(TD);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(59), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
    maxDiscoveryStreamsPerFleet: MAX,
  });
  await cp.whenReady();
  address = `127.0.0.1:${cp.grpcPort}`;
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

test('the certificates of one bootstrap token hold at most maxDiscoveryStreamsPerFleet streams together, however many it mints; other tokens are other fleets', async () => {
  // One certificate per stream, each far under its own MAX_STREAMS_PER_POD.
  expect(MAX).toBeLessThan(MAX_STREAMS_PER_POD);
  const certs = await Promise.all(Array.from({ length: MAX + 1 }, () => certify(VM, VM_TOKEN)));
  const held: Outcome[] = [];
  for (let i = 0; i < MAX; i++) held.push(await subscribe(certs[i], VM, `vm-${i}`));
  expect(held.map((o) => o.code)).toEqual(held.map(() => null));
  const over = await subscribe(certs[MAX], VM, `vm-${MAX}`);
  expect({ code: over.code, details: over.details }).toEqual({
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: expect.stringMatching(new RegExp(`^the certificates of this bootstrap token \\(bootstrap-token vms/vm [0-9a-f]{32}\\) hold ${MAX} discovery streams, at most ${MAX} \\(--discovery-max-streams-per-fleet\\)$`)),
  });
  expect(await refused()).toBe(1);
  // A certificate renewed from one of them is the same fleet's.
  const renewed = await certify(VM, '', certs[0]);
  expect((await subscribe(renewed, VM, 'vm-renewed')).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(await refused()).toBe(2);
  // Another token (of the same identity, or another) is another fleet.
  expect((await subscribe(await certify(VM, VM_TOKEN_2), VM, 'vm-second')).code).toBeNull();
  expect((await subscribe(await certify(OTHER, BATCH_TOKEN), OTHER, 'batch-0')).code).toBeNull();
  // A stream closed frees its place.
  const before = cp.discovery.subscriberCount;
  held.pop()!.stream.cancel();
  await waitFor(() => cp.discovery.subscriberCount < before, 'the cancelled stream dropped');
  expect((await subscribe(certs[MAX], VM, `vm-${MAX}`)).code).toBeNull();
}, 30_000);

test('the bound is checked at start: an integer from 1; the default is DEFAULT_MAX_STREAMS_PER_FLEET (256)', async () => {
  expect(DEFAULT_MAX_STREAMS_PER_FLEET).toBe(256);
  await expect(ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }), maxDiscoveryStreamsPerFleet: 0,
  })).rejects.toThrow(/maxDiscoveryStreamsPerFleet/);
});
