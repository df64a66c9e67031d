import * as grpc from '@grpc/grpc-js';
import { checkPeerSpiffeId } from '../../certs/index.js';

/**
 * The trust bundle a control-plane channel verifies the server with, replaceable while
 * the channel lives: a grpc-js CertificateProvider (experimental API, the one its xDS
 * certificate providers use) whose CA update every new connection reads
 * (CertificateProviderChannelCredentialsImpl builds the secure context per connect).
 * Open connections keep the context they were made with.
 */
class TrustBundleProvider implements grpc.experimental.CertificateProvider {
  private readonly listeners = new Set<grpc.experimental.CaCertificateUpdateListener>();

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

  addIdentityCertificateListener(): void {}

  removeIdentityCertificateListener(): void {}
}

const providers = new WeakMap<grpc.ChannelCredentials, TrustBundleProvider>();

/**
 * gRPC channel credentials for talking to the control plane: TLS, the server verified
 * against the mesh trust bundle, and its identity checked as a SPIFFE ID (its
 * certificate has no DNS names, so the usual hostname check cannot apply). No client
 * certificate: the first Certify is how the proxy gets one.
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
  const creds = grpc.experimental.createCertificateProviderChannelCredentials(provider, null, {
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
 * IP address. The SPIFFE check above ignores the name either way.
 */
export const CONTROL_PLANE_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'wren-control-plane' };
