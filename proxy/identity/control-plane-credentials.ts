import * as grpc from '@grpc/grpc-js';
import { checkPeerSpiffeId } from '../../certs/index.js';

/**
 * gRPC channel credentials for talking to the control plane: TLS, the server verified
 * against the mesh trust bundle, and its identity checked as a SPIFFE ID (its
 * certificate has no DNS names, so the usual hostname check cannot apply). No client
 * certificate: the first Certify is how the proxy gets one.
 */
export function controlPlaneCredentials(trustBundlePem: string, expectedSpiffeId: string): grpc.ChannelCredentials {
  const check = checkPeerSpiffeId(expectedSpiffeId);
  return grpc.credentials.createSsl(Buffer.from(trustBundlePem), null, null, {
    checkServerIdentity: (host, cert) => check(host, cert),
  });
}

/**
 * Channel options for those credentials. The SNI name is set to a DNS-shaped name:
 * grpc-js would otherwise send the target host, and Node warns (DEP0123) when that is an
 * IP address. The SPIFFE check above ignores the name either way.
 */
export const CONTROL_PLANE_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'wren-control-plane' };
