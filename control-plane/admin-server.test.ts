import type { Server } from 'node:http';
import { systemClock } from '../common/clock.js';
import { AdminAccess } from './admin-access.js';
import { startAdminServer, type AdminDeps } from './admin-server.js';
import type { DiscoveryServer } from './discovery/discovery-server.js';
import { ControlPlaneMetrics } from './metrics.js';
import type { MeshStore } from './store/mesh-store.js';
import type { StatsStore } from './stats/stats-store.js';

/**
 * The control plane's admin port against a hostile or careless client, with the state it
 * shows stubbed: what a page must not show (a jwksUri's API key), and how a malformed
 * request is answered (a 4xx naming the problem, and the port keeps serving).
 */
const SECRET = 'AKIA-CP-ADMIN-SECRET';
const JWKS_URI = `https://id.example.com/jwks.json?api_key=${SECRET}`;
const policy = { mtls: { mode: 'STRICT' }, portLevelMtls: {}, authorizationPolicies: [], jwtRules: [{ issuer: 'https://id.example.com', jwksUri: JWKS_URI, audiences: [] }] };

let server: Server;
let port: number;
let metrics: ControlPlaneMetrics;

beforeAll(async () => {
  metrics = new ControlPlaneMetrics();
  const view = {
    version: 'v1', services: new Map(), routes: { byService: new Map() },
    policy: {
      peerAuthentications: [], authorizationPolicies: [], externalServices: [],
      requestAuthentications: [{ name: 'jwt', namespace: 'shop', selector: {}, jwtRules: policy.jwtRules }],
    },
  };
  const discovery = {
    debugProxies: () => [{ id: 1, identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'web-0' }, ackedVersion: 'v1', inboundPolicy: policy, nacks: 0, lastNack: null, ejections: [] }],
    proxyStatus: () => [],
    proxyConfig: (pod: string) => (pod === 'shop/web-0' ? [{ pod, identity: 'spiffe://cluster.local/ns/shop/sa/web', ackedVersion: 'v1', services: [], routes: {}, policy, telemetry: null, cert: null }] : []),
    debugHealth: () => [],
    debugTrust: () => ({ controlPlane: null, proxies: [] }),
  } as unknown as DiscoveryServer;
  const stats = { reporterList: () => [], stat: () => [], edges: () => [], denials: () => [], retries: () => [], droppedRetries: () => 0 } as unknown as StatsStore;
  const deps: AdminDeps = {
    store: { view, ready: true } as unknown as MeshStore, metrics, discovery, stats, clock: systemClock, draining: () => false,
    sourceErrors: () => [], sourceIgnored: () => [], sourceName: 'test', sourceRejected: () => [],
    access: new AdminAccess({ namespace: 'wren-system', authenticator: null, clock: systemClock }),
  };
  ({ server, port } = await startAdminServer('127.0.0.1', 0, deps));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const get = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${port}${path}`, init).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() }));

test("no debug page or /api/ answer shows a jwksUri's query (an API key): the URI is shown up to it, as the proxy's /config_dump shows it", async () => {
  for (const path of ['/debug/proxy-config?pod=shop/web-0', '/debug/proxies', '/debug/view', '/api/proxies', '/api/proxies/shop%2Fweb-0']) {
    const r = await get(path);
    expect([path, r.status]).toEqual([path, 200]);
    expect([path, r.body.includes(SECRET)]).toEqual([path, false]);
    expect([path, r.body.includes('https://id.example.com/jwks.json?…')]).toEqual([path, true]);
  }
});
