import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { FakeClock, seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { WALL_CHECK_MS } from '../common/wall-deadline.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { DiscoveryServer } from '../control-plane/discovery/discovery-server.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ServingIdentity } from '../control-plane/identity/serving-identity.js';
import { ControlPlaneMetrics } from '../control-plane/metrics.js';
import { MeshStore } from '../control-plane/store/mesh-store.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate } from '../proxy/identity/control-plane-credentials.js';

/**
 * A discovery stream ends (UNAUTHENTICATED) when its client certificate expires. It was one
 * timer of the time left, on the monotonic clock, which stops while the host is suspended (a
 * laptop running kind asleep, a VM paused): a control plane woken after the certificate had
 * expired kept serving the stream for as long again. The expiry is now due by the wall clock,
 * looked at at least once a minute. A real DiscoveryServer with client authentication on a
 * gRPC server with the control plane's TLS credentials, a real grpc-js client presenting a
 * certificate of the same CA; the server's injected clock is a FakeClock whose wall clock
 * jumps while its timers stay (the suspend).
 */
class SuspendableClock extends FakeClock {
  skipped = 0;
  override wallNow(): number {
    return super.wallNow() + this.skipped;
  }
}

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const HOUR = 3_600_000;

let server: grpc.Server;
let client: grpc.Client;
let serving: ServingIdentity;
let ds: DiscoveryServer;

afterAll(() => {
  client?.close();
  ds?.closeAll();
  serving?.stop();
  server?.forceShutdown();
});

test('a stream whose certificate expired while the host slept ends within a minute of waking, counted certificate-expired', async () => {
  const issuer = generateIssuer(TD, new Date(Date.now() - HOUR));
  const clock = new SuspendableClock(Date.now());
  const store = new MeshStore(clock, seededRandom(1));
  store.apply([], []);
  store.markReady();
  const metrics = new ControlPlaneMetrics({ processMetrics: false });
  ds = new DiscoveryServer({ store, metrics, clock, logger: silentLogger, issuer, clientAuth: { trustDomain: TD, podsAuthoritative: false } });
  // The TLS handshakes are judged by this machine's clock: the serving certificate is issued by it.
  serving = new ServingIdentity({ issuer, spiffeId: controlPlaneSpiffeId(TD), ttlMs: 24 * HOUR, clock: systemClock, random: seededRandom(2), logger: silentLogger });
  server = new grpc.Server();
  server.addService(DiscoveryServer.definition(), ds.implementation);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', serving.credentials, (e, p) => (e ? rej(e) : res(p))));

  const keyPem = generateKeyPair().privateKeyPem;
  const leaf = issuer.ca.issue(createCsr(keyPem, WEB), { identity: WEB, ttlMs: HOUR, now: new Date(clock.wallNow()) });
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  presentCertificate(creds, { keyPem, certChainPem: [leaf.certPem, ...leaf.chainPems].join('') });
  const { Client } = loadDiscoveryProto();
  client = new Client(`127.0.0.1:${port}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  const ended = new Promise<grpc.ServiceError>((resolve) => stream.once('error', resolve));
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  stream.write({ subscribe: { identity: { spiffeId: WEB, namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  expect((await first).full).toBe(true);

  // Asleep for two hours: the certificate (an hour long) expired by the wall clock; no timer moved.
  clock.skipped = 2 * HOUR;
  clock.advance(WALL_CHECK_MS);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([ended.then((e) => ({ code: e.code, details: e.details })), new Promise((r) => (timer = setTimeout(() => r('still open'), 2_000)))]);
  clearTimeout(timer);
  expect(outcome).toEqual({ code: grpc.status.UNAUTHENTICATED, details: 'the client certificate has expired' });
  expect(await metrics.registry.getSingleMetricAsString('wren_cp_discovery_refused_total')).toMatch(/reason="certificate-expired"\} 1$/m);
});
