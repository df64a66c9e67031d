import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../../contract/discovery.js';
import { startDirControlPlane, type DirControlPlane } from './dir-control-plane.js';

/** The manifest of shop/web: one HTTP/1.1 port, one endpoint on 127.0.0.1:`port`. */
export const shopWebYaml = (port: number): string =>
  `kind: MeshService\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1 }]\n  endpoints: [{ address: 127.0.0.1, port: ${port} }]\n`;

/**
 * The discovery suites' control plane: shop/web (port 8080) from a directory, plaintext gRPC
 * on loopback, no admin port, its log lines (info and up) pushed to `logs`.
 */
export function shopWebControlPlane(prefix: string, logs: string[]): Promise<DirControlPlane> {
  return startDirControlPlane({
    prefix, trustDomain: 'cluster.local', seed: 5, mesh: { 'web.yaml': shopWebYaml(8080) },
    control: { admin: null, logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }) },
  });
}

/** A raw discovery stream to a control plane on loopback (plaintext), and its client to close. */
export function discoveryStream(grpcPort: number): { client: grpc.Client; stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> } {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  return { client, stream: (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream() };
}
