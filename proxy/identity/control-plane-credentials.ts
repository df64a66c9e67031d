import * as grpc from '@grpc/grpc-js';
import { checkPeerSpiffeId } from '../../certs/index.js';
import { NO_ENV_PROXY } from '../../common/grpc-env-proxy.js';

/** What the proxy presents to the control plane: its workload key and certificate chain. */
export interface ClientCertificate {
  readonly keyPem: string;
  readonly certChainPem: string;
}

/**
 * The trust bundle a control-plane channel verifies the server with, and the client
 * certificate it presents, both replaceable while the channel lives: a grpc-js
 * CertificateProvider (experimental API, the one its xDS certificate providers use) whose
 * updates every new connection reads (CertificateProviderChannelCredentialsImpl builds
 * the secure context per connect). Open connections keep the context they were made with,
 * so a client that must present a new certificate makes a new channel (`generation`).
 */
class TrustBundleProvider implements grpc.experimental.CertificateProvider {
  private readonly listeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private identity: ClientCertificate | null = null;
  /** Bumped whenever the presented certificate changes. */
  generation = 0;

  readonly initialPem: string;

  constructor(private pem: string) {
    this.initialPem = pem;
  }

  get bundlePem(): string {
    return this.pem;
  }

  update(pem: string): void {
    if (pem === this.pem) return;
    this.pem = pem;
    for (const l of this.listeners) l({ caCertificate: Buffer.from(pem) });
  }

  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.listeners.add(l);
    l({ caCertificate: Buffer.from(this.pem) });
  }

  removeCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.listeners.delete(l);
  }

  present(c: ClientCertificate): boolean {
    if (this.identity?.certChainPem === c.certChainPem && this.identity.keyPem === c.keyPem) return false;
    this.identity = { keyPem: c.keyPem, certChainPem: c.certChainPem };
    this.generation++;
    for (const l of this.identityListeners) l(this.identityUpdate());
    return true;
  }

  /**
   * Before the first certificate there is nothing to present, but grpc-js waits for an
   * identity update before it connects; an update without key and certificate makes a
   * secure context without a client certificate (createSecureContext leaves them unset).
   */
  private identityUpdate(): grpc.experimental.IdentityCertificateUpdate {
    return (this.identity
      ? { privateKey: Buffer.from(this.identity.keyPem), certificate: Buffer.from(this.identity.certChainPem) }
      : { privateKey: undefined, certificate: undefined }) as unknown as grpc.experimental.IdentityCertificateUpdate;
  }

  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(l);
    l(this.identityUpdate());
  }

  removeIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(l);
  }
}

const providers = new WeakMap<grpc.ChannelCredentials, TrustBundleProvider>();

/**
 * gRPC channel credentials for talking to the control plane: TLS, the server verified
 * against the mesh trust bundle, and its identity checked as a SPIFFE ID (its
 * certificate has no DNS names, so the usual hostname check cannot apply). The client
 * certificate starts empty (the first Certify is how the proxy gets one, with its token)
 * and is the workload certificate once `presentCertificate` was called: the control plane
 * binds discovery streams to it and renews by it (docs/security.md).
 *
 * The bundle starts as the configured one (WREN_TRUST_BUNDLE) and follows the one the
 * proxy gets from Certify (updateControlPlaneTrust, called on every certificate rotation
 * by connectControlPlane): when the control plane's issuer moves to a new root
 * (docs/trust-anchor-rotation.md) its serving certificate does too, and a proxy started
 * with only the old root must still reconnect. The Certify bundle arrived over a channel
 * this bundle authenticated, so trusting it adds nothing an attacker could choose.
 */
export function controlPlaneCredentials(trustBundlePem: string, expectedSpiffeId: string): grpc.ChannelCredentials {
  const check = checkPeerSpiffeId(expectedSpiffeId);
  const provider = new TrustBundleProvider(trustBundlePem);
  const creds = grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: (host, cert) => check(host, cert),
  });
  providers.set(creds, provider);
  return creds;
}

/** Replaces the bundle `creds` verifies the control plane with (new connections only). false when `creds` are not from controlPlaneCredentials. */
export function updateControlPlaneTrust(creds: grpc.ChannelCredentials | undefined, trustBundlePem: string): boolean {
  const p = creds ? providers.get(creds) : undefined;
  if (!p || !trustBundlePem) return false;
  p.update(trustBundlePem);
  return true;
}

/**
 * Present `cert` on new connections made with `creds` (after Certify, and after every
 * rotation). true when it changed what they present (the generation moved); false when
 * it is the one already presented or `creds` are not from controlPlaneCredentials.
 */
export function presentCertificate(creds: grpc.ChannelCredentials | undefined, cert: ClientCertificate): boolean {
  const p = creds ? providers.get(creds) : undefined;
  return p ? p.present(cert) : false;
}

/** Changes whenever the certificate `creds` present changes: a channel made at another generation presents an old one (0: none yet, or not ours). */
export function credentialsGeneration(creds: grpc.ChannelCredentials | undefined): number {
  return creds ? (providers.get(creds)?.generation ?? 0) : 0;
}

/** The bundle `creds` verify the control plane with now (null when not from controlPlaneCredentials). */
export function controlPlaneTrustOf(creds: grpc.ChannelCredentials | undefined): string | null {
  return creds ? (providers.get(creds)?.bundlePem ?? null) : null;
}

/** The bundle `creds` were created with: what the proxy verifies the control plane with after a restart. */
export function controlPlaneStartupTrustOf(creds: grpc.ChannelCredentials | undefined): string | null {
  return creds ? (providers.get(creds)?.initialPem ?? null) : null;
}

/**
 * Channel options for those credentials. The SNI name is set to a DNS-shaped name:
 * grpc-js would otherwise send the target host, and Node warns (DEP0123) when that is an
 * IP address. The SPIFFE check above ignores the name either way. A channel of its own
 * subchannels: grpc-js otherwise shares connections between channels with equal
 * credentials, and a channel made to present a renewed certificate would ride the old
 * connection (and its old handshake). Never through a proxy of the environment (NO_ENV_PROXY).
 */
export const CONTROL_PLANE_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'wren-control-plane', 'grpc.use_local_subchannel_pool': 1, ...NO_ENV_PROXY };
