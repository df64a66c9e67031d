import { parseService } from '../../contract/parse.js';
import type { Proxy } from '../../proxy/proxy.js';
import { compileRouteManifests, type RouteManifest } from './routes.js';

/** A backend service of the route suites: the app port behind the server sidecar, its protocol (default http1), and the service's own TrafficPolicy if any. */
export interface RoutedBackend {
  readonly port: number;
  readonly protocol?: 'http1' | 'http2' | 'grpc';
  readonly policy?: Record<string, unknown>;
}

/**
 * The route suites' data path (HTTPRoutes on Service web:80, as test/gamma-routes.test.ts
 * builds it): a client sidecar given services by snapshot, a server sidecar in front of the
 * backends. `route(name, rules)` is an HTTPRoute whose parent is web:80; `use(...manifests)`
 * pushes to the client what the control plane would: one service (port 80, namespace
 * default) per backend, its one endpoint behind the server sidecar, with the routes
 * compileRouteManifests made for it, at a new snapshot version each time.
 */
export function webRoutes(client: () => Proxy, server: () => Proxy, backends: () => Readonly<Record<string, RoutedBackend>>): {
  route(name: string, rules: Record<string, unknown>[]): RouteManifest;
  use(...manifests: RouteManifest[]): void;
} {
  let version = 0;
  return {
    route: (name, rules) => ({ kind: 'HTTPRoute', metadata: { name }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules } }),
    use(...manifests) {
      const all = backends();
      const routes = compileRouteManifests(manifests, (ns, name) => (ns === 'default' && all[name] ? { ports: [{ name: '', port: 80 }] } : undefined));
      const s = server();
      const services = Object.entries(all).map(([name, b]) =>
        parseService({
          name, ports: [{ port: 80, protocol: b.protocol ?? 'http1', endpoints: [{ address: '127.0.0.1', port: b.port, proxyPort: s.inboundPort, identity: s.tls.spiffeId }] }], routes: routes.get(`${name}.default`),
          ...(b.policy ? { policy: b.policy } : {}),
        }, name));
      client().applySnapshot({ version: String(++version), source: 'test', services });
    },
  };
}
