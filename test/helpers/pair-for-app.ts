import type { Proxy } from '../../proxy/proxy.js';
import type { TestPki } from './pki.js';
import { startPair } from './proxy.js';

/** startPair in front of `app` (service web:80 by default), with a close() that stops the client, the server, then the app. */
export async function startPairFor(
  pki: TestPki,
  app: { readonly port: number; close(): Promise<void> },
  o: Parameters<typeof startPair>[2] = {},
): Promise<{ readonly client: Proxy; readonly server: Proxy; close(): Promise<void> }> {
  const pair = await startPair(pki, app.port, o);
  return {
    client: pair.client,
    server: pair.server,
    async close() {
      await pair.close();
      await app.close();
    },
  };
}
