import { directReplica } from '../../cli/control-plane-admin.js';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { ControlPlane } from '../../control-plane/server.js';
import type { Proxy } from '../../proxy/proxy.js';
import { startDirControlPlane } from './dir-control-plane.js';
import { listenOnLoopback } from './fake-app.js';
import { meshServiceYaml } from './mesh-service-yaml.js';
import type { TestPki } from './pki.js';
import { startProxy } from './proxy.js';
import { replaceFile } from './replace-file.js';
import { statusOf } from './status-of.js';

export interface StatsMesh {
  readonly cp: ControlPlane;
  /** The `web` workload's sidecar: the caller. */
  readonly client: Proxy;
  /** The `api` workload's sidecar, in front of two apps (endpoints good and bad). */
  readonly server: Proxy;
  readonly goodPort: number;
  readonly badPort: number;
  /** While true the `bad` endpoint answers 503 (outlier detection ejects it after 2). */
  failing: boolean;
  /** One request from the client app through its sidecar to api.default; resolves with the status. */
  call(path?: string): Promise<number>;
  admin(path: string): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * A small real mesh on loopback for `wren stat` and the dashboard: a control plane (dir
 * source, admin port) and two sidecars subscribed to it that report their stats every
 * `statsIntervalMs`: `web` (itself service `web`) calls service `api` (two endpoints behind the `api` sidecar,
 * outlier detection after 2 5xx in a row), and an AuthorizationPolicy denies /admin.
 */
export async function startStatsMesh(pki: TestPki, o: { statsIntervalMs?: number } = {}): Promise<StatsMesh> {
  const closers: (() => Promise<void>)[] = [];
  const state = { failing: false };
  const app = async (fail: () => boolean): Promise<number> => {
    const s: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = fail() ? 503 : 200;
        res.end('ok');
      });
    });
    const l = await listenOnLoopback(s);
    closers.push(l.close);
    return l.port;
  };
  const goodPort = await app(() => false);
  const webPort = await app(() => false);
  const badPort = await app(() => state.failing);
  const stats = { statsReport: { intervalMs: o.statsIntervalMs ?? 250 } };
  const identity = (sa: string) => ({ namespace: 'default', serviceAccount: sa, trustDomain: pki.trustDomain, workload: { name: sa, app: sa, version: 'v1' } });
  const plane = await startDirControlPlane({ prefix: 'wren-stats-', trustDomain: pki.trustDomain, seed: 5, dirSource: { rescanMs: 5_000 }, ready: false });
  const { cp, dir } = plane;
  const server = await startProxy({ pki, serviceAccount: 'api', controlPlane: `127.0.0.1:${cp.grpcPort}`, config: { identity: identity('api'), discovery: stats, shutdown: { gracePeriodMs: 200 } } });
  const ep = (port: number) => ({ port, proxyPort: server.inboundPort, identity: server.tls.spiffeId, workload: { name: 'api', app: 'api', version: 'v1' } });
  await replaceFile(join(dir, 'api.yaml'), meshServiceYaml('api', [ep(goodPort), ep(badPort)], {
    loadBalancer: { kind: 'round-robin' },
    outlierDetection: { consecutive5xx: 2, intervalMs: '100ms', baseEjectionTimeMs: '30s', maxEjectionPercent: 50 },
  }));
  await replaceFile(join(dir, 'deny-admin.yaml'), `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/admin"] } }]
`);
  await cp.whenReady();
  const client = await startProxy({ pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${cp.grpcPort}`, config: { identity: identity('web'), discovery: stats, shutdown: { gracePeriodMs: 200 } } });
  // The caller is a service too (nobody calls it here): the topology shows both.
  await replaceFile(join(dir, 'web.yaml'), `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: web, namespace: default }
spec:
  ports:
    - { name: http, port: 80, protocol: http1, endpoints: [{ address: 127.0.0.1, port: ${webPort}, proxyPort: ${client.inboundPort}, identity: "${client.tls.spiffeId}", workload: { name: web, namespace: default } }] }
`);
  // Ready, and configured with both services: /ready turns 200 at the first snapshot, which
  // may predate the control plane's read of api.yaml or web.yaml (a loaded machine delays the
  // directory's events), and a call then gets 404 (no route).
  const ready = async (p: Proxy) => {
    for (let i = 0; i < 400; i++) {
      if ((await fetch(`http://127.0.0.1:${p.adminPort}/ready`)).ok) {
        const dump = (await (await fetch(`http://127.0.0.1:${p.adminPort}/config_dump`)).json()) as { services?: { name: string }[] };
        const names = new Set((dump.services ?? []).map((x) => x.name));
        if (names.has('api') && names.has('web')) return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('proxy not configured by the control plane with the api and web services');
  };
  await ready(client);
  await ready(server);
  const mesh: StatsMesh = {
    cp, client, server, goodPort, badPort,
    get failing() {
      return state.failing;
    },
    set failing(v: boolean) {
      state.failing = v;
    },
    call: (path = '/') => statusOf(client.outboundPort, 'api.default.svc.cluster.local', path),
    // As `wren stat` reads it: a 503 of the render budget on a loaded machine is waited out (Retry-After), not a failure.
    admin: async (path) => JSON.parse((await directReplica(`127.0.0.1:${cp.adminPort}`, 10_000).get(path)).body) as unknown,
    async close() {
      await client.close();
      await server.close();
      await plane.close(100);
      await Promise.all(closers.map((c) => c()));
    },
  };
  return mesh;
}
