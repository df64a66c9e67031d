import { createServer } from 'node:http';
import type { TestPki } from './pki.js';
import { startProxy, meshService } from './proxy.js';
import { listenOnLoopback } from './fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';

/** An XFCC a caller forges, naming an identity it does not have (sa/admin). */
export const FORGED_XFCC = 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin';

export interface SniffMesh {
  /** web's sidecar (STRICT), in front of the app. */
  readonly server: Proxy;
  /** A PERMISSIVE sidecar whose inbound delivers plaintext callers to the same app. */
  readonly permissive: Proxy;
  /** A client sidecar whose app dials web's ClusterIP (the outbound's original destination). */
  readonly client: Proxy;
  readonly appPort: number;
  /** The x-forwarded-client-cert of each request the app got ('' none), in order. */
  readonly seen: readonly string[];
  close(): Promise<void>;
}

/**
 * The mesh the protocol-detection suites send odd bytes through (sniff-*.test.ts): one app
 * that records each request's XFCC and answers `xfcc=VALUE`, behind web's sidecar, a PERMISSIVE sidecar in front of it too, and a client
 * sidecar whose original destination is `clusterIP:80` (web's detect port), all with a
 * 300 ms detection timeout.
 */
export async function startSniffMesh(pki: TestPki, clusterIP: string): Promise<SniffMesh> {
  const seen: string[] = [];
  const app = await listenOnLoopback(
    createServer((req, res) => {
      const xfcc = String(req.headers['x-forwarded-client-cert'] ?? '');
      seen.push(xfcc);
      res.end(`xfcc=${xfcc}`);
    }),
  );
  const protocol = { detectTimeoutMs: 300 };
  const server = await startProxy({ pki, serviceAccount: 'web', config: { protocol } });
  const permissive = await startProxy({
    pki, serviceAccount: 'perm', inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol },
  });
  const client = await startProxy({
    pki, serviceAccount: 'client', config: { protocol },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }], { clusterIPs: [clusterIP] })],
    originalDst: () => ({ address: clusterIP, port: 80 }),
  });
  return {
    server, permissive, client, appPort: app.port, seen,
    close: async () => {
      await Promise.all([permissive.close(), client.close()]);
      await server.close();
      await app.close();
    },
  };
}
