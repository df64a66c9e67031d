import type { Proxy } from '../../proxy/proxy.js';
import { fakeApp, type FakeApp } from './fake-app.js';
import type { TestPki } from './pki.js';
import { startProxy } from './proxy.js';

/** A fake `web` app and the `web` sidecar in front of it, alone (suites that write to its inbound port by hand, as a peer would). */
export async function startWebSidecar(pki: TestPki): Promise<{ app: FakeApp; server: Proxy }> {
  const app = await fakeApp('web');
  const server = await startProxy({ pki, serviceAccount: 'web' });
  return { app, server };
}

/** Closes what startWebSidecar started, sidecar first. */
export async function closeWebSidecar(w: { readonly app: FakeApp; readonly server: Proxy }): Promise<void> {
  await w.server.close();
  await w.app.close();
}
