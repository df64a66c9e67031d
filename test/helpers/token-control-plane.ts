import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../../certs/index.js';
import type { Logger } from '../../common/logger.js';
import { controlPlaneSpiffeId } from '../../contract/identity.js';
import { BootstrapTokenAuthenticator } from '../../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../../control-plane/identity/issuer.js';
import { CertifyClient } from '../../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate, type ClientCertificate } from '../../proxy/identity/control-plane-credentials.js';
import { startDirControlPlane, type DirControlPlane } from './dir-control-plane.js';

export interface TokenControlPlane extends DirControlPlane {
  readonly issuer: Issuer;
  /** host:port of its gRPC server (TLS). */
  readonly address: string;
  /** Credentials as a proxy makes them: the control plane verified by the bundle and its SPIFFE ID; `cert` presented when given. */
  credentials(cert?: ClientCertificate): grpc.ChannelCredentials;
  /**
   * A fresh key and a certificate for `identity` from Certify, authenticated by `token`
   * (with `creds` presenting a certificate, '' asks for a renewal by that certificate).
   */
  certify(identity: string, token: string, o?: { readonly creds?: grpc.ChannelCredentials; readonly lifetimeMs?: number }): Promise<ClientCertificate>;
}

/**
 * A control plane as in production (transport TLS, its own CA, Certify authenticated by
 * bootstrap tokens read from a tokens file) over a temporary directory, no admin port:
 * what the identity and reporter suites talk to with their own certificates.
 */
export async function startTokenControlPlane(o: {
  readonly prefix: string;
  readonly trustDomain: string;
  /** Manifests (file name -> content) in the mesh directory. */
  readonly mesh: Readonly<Record<string, string>>;
  readonly tokens: readonly { readonly token: string; readonly namespace: string; readonly serviceAccount: string }[];
  readonly seed?: number;
  readonly logger?: Logger;
}): Promise<TokenControlPlane> {
  const issuer = generateIssuer(o.trustDomain);
  const tokens = `tokens:\n${o.tokens.map((t) => `  - { token: ${t.token}, namespace: ${t.namespace}, serviceAccount: ${t.serviceAccount} }`).join('\n')}\n`;
  const plane = await startDirControlPlane({
    prefix: o.prefix, trustDomain: o.trustDomain, seed: o.seed ?? 3, mesh: o.mesh, rootFiles: { 'tokens.yaml': tokens },
    control: (root) => ({
      admin: null, ...(o.logger ? { logger: o.logger } : {}), transport: 'tls',
      identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(root, 'tokens.yaml')) },
    }),
  });
  const address = `127.0.0.1:${plane.cp.grpcPort}`;
  const certifiers: CertifyClient[] = [];
  const credentials = (cert?: ClientCertificate): grpc.ChannelCredentials => {
    const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(o.trustDomain));
    if (cert) presentCertificate(creds, cert);
    return creds;
  };
  const closeCertifiers = () => certifiers.splice(0).forEach((c) => c.close());
  return {
    ...plane, issuer, address, credentials,
    async certify(identity, token, c = {}) {
      const keyPem = generateKeyPair().privateKeyPem;
      const client = new CertifyClient(address, c.creds ?? credentials(), CONTROL_PLANE_CHANNEL_OPTIONS);
      certifiers.push(client);
      const r = await client.certify({ identity, token: Buffer.from(token), csrPem: createCsr(keyPem, identity), requestedLifetimeMs: c.lifetimeMs ?? 0 }, 10_000);
      return { keyPem, certChainPem: r.certChainPem };
    },
    async close(graceMs) {
      closeCertifiers();
      await plane.close(graceMs);
    },
    async kill() {
      closeCertifiers();
      await plane.kill();
    },
  };
}
