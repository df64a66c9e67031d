import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../../certs/index.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../../contract/discovery.js';
import { controlPlaneSpiffeId } from '../../contract/identity.js';
import { generateIssuer } from '../../control-plane/identity/issuer.js';
import { TokenReviewAuthenticator } from '../../control-plane/identity/token-review-authenticator.js';
import { ControlPlane } from '../../control-plane/server.js';
import { KubernetesSource } from '../../control-plane/sources/kubernetes-source.js';
import { CertifyClient } from '../../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../../proxy/identity/control-plane-credentials.js';
import type { FakeKubeApi } from '../fake-kube-api.js';

/** A control plane over TLS on the fake API server (Kubernetes source, TokenReview), and what its clients need. */
export interface KubeTlsControlPlane {
  readonly cp: ControlPlane;
  /** A certificate from Certify for `identity` with `token` (bound to a pod by the fake API server's TokenReview, or none). */
  certify(identity: string, token: string | Buffer, presenting?: ClientCertificate): Promise<ClientCertificate>;
  /** A discovery stream presenting `cert` (not yet subscribed); its channel is closed with the control plane. */
  stream(cert?: ClientCertificate): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  close(): Promise<void>;
}

/**
 * The control plane of the adversary tests of pod-bound certificates (adv53): Kubernetes
 * source on `api`, TokenReview through it, TLS transport, a fresh issuer; real grpc-js
 * Certify and discovery clients with the control plane's channel options.
 */
export async function startKubeTlsControlPlane(api: FakeKubeApi, seed: number): Promise<KubeTlsControlPlane> {
  const TD = 'cluster.local';
  const issuer = generateIssuer(TD);
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(seed), logger: silentLogger,
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    identity: { issuer, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }) },
    transport: 'tls',
  });
  await cp.whenReady();
  const address = `127.0.0.1:${cp.grpcPort}`;
  const clients: grpc.Client[] = [];
  const credentials = (cert?: ClientCertificate): grpc.ChannelCredentials => {
    const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
    if (cert) presentCertificate(creds, cert);
    return creds;
  };
  return {
    cp,
    async certify(identity, token, presenting) {
      const keyPem = generateKeyPair().privateKeyPem;
      const c = new CertifyClient(address, credentials(presenting), CONTROL_PLANE_CHANNEL_OPTIONS);
      try {
        const r = await c.certify({ identity, token: Buffer.from(token), csrPem: createCsr(keyPem, identity), requestedLifetimeMs: 0 }, 10_000);
        return { keyPem, certChainPem: r.certChainPem };
      } finally {
        c.close();
      }
    },
    stream(cert) {
      const { Client } = loadDiscoveryProto();
      const client = new Client(address, credentials(cert), CONTROL_PLANE_CHANNEL_OPTIONS);
      clients.push(client);
      return (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
    },
    async close() {
      for (const c of clients) c.close();
      await cp.kill();
    },
  };
}
