import type { Service } from '../../contract/model.js';
import type { Proxy } from '../../proxy/proxy.js';
import { fakeGrpc, type FakeGrpc } from './fake-grpc.js';
import type { TestPki } from './pki.js';
import { startProxy } from './proxy.js';

/**
 * gRPC through a pair of sidecars: the fake Echo backend behind an `echo` sidecar, and a
 * `client` sidecar given the services `services(echo)` makes, where `echo` is that backend
 * behind its sidecar (a meshService backend). close() stops them, client first.
 */
export async function startGrpcPair(
  pki: TestPki,
  services: (echo: { readonly appPort: number; readonly proxy: Proxy }) => Service[],
): Promise<{ readonly backend: FakeGrpc; readonly server: Proxy; readonly client: Proxy; close(): Promise<void> }> {
  const backend = await fakeGrpc();
  const server = await startProxy({ pki, serviceAccount: 'echo' });
  const client = await startProxy({ pki, serviceAccount: 'client', services: services({ appPort: backend.port, proxy: server }) });
  return {
    backend, server, client,
    async close() {
      await client.close();
      await server.close();
      await backend.close();
    },
  };
}
