import type { ServiceRoute } from '../../contract/routes.js';
import { parseServiceRoutes } from '../../contract/parse-routes.js';
import { compileRoutes, routesFor, type ServicePortsLookup } from '../../control-plane/translate/route-compile.js';
import { parseGrpcRoute, parseHttpRoute } from '../../control-plane/translate/route-objects.js';

/** The parts of a Gateway API HTTPRoute / GRPCRoute manifest (v1.6.1) the route tests write. */
export interface RouteManifest {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly parentRefs: readonly { readonly group?: string; readonly kind?: string; readonly name: string; readonly namespace?: string; readonly port?: number }[];
    readonly rules?: readonly Record<string, unknown>[];
  };
}

/**
 * THE one place the route tests get their compiled routes from: Gateway API manifests as
 * the upstream conformance cases write them, compiled by the control plane itself
 * (control-plane/translate/route-objects.ts parses and validates them as from a manifest
 * directory, route-compile.ts resolves backendRefs against `services` and orders them),
 * then through the wire's validation (contract/parse-routes.ts): what a proxy gets from
 * the control plane for callers in `callerNamespace`, keyed `name.namespace`.
 */
export function compileRouteManifests(
  manifests: readonly RouteManifest[],
  services: ServicePortsLookup,
  callerNamespace = 'default',
): ReadonlyMap<string, readonly ServiceRoute[]> {
  const parsed = manifests.map((m, i) => {
    const raw = { apiVersion: 'gateway.networking.k8s.io/v1', ...m, metadata: { namespace: 'default', ...m.metadata } };
    return (m.kind === 'GRPCRoute' ? parseGrpcRoute : parseHttpRoute)(raw, `manifests[${i}]`);
  });
  const { view, statuses } = compileRoutes(parsed, [], services);
  for (const st of statuses.values()) {
    for (const p of st.parents) {
      const bad = p.conditions.find((c) => c.type === 'Accepted' && c.status !== 'True');
      if (bad) throw new Error(`${st.route.kind} ${st.route.name} not accepted: ${bad.reason}: ${bad.message}`);
    }
  }
  const out = new Map<string, readonly ServiceRoute[]>();
  for (const key of view.byService.keys()) {
    const routes = routesFor(view, key, callerNamespace);
    out.set(key, parseServiceRoutes(JSON.parse(JSON.stringify(routes)), `routes[${key}]`));
  }
  return out;
}

/**
 * A consumer route (GEP-1294) as a directory manifest: callers in namespace batch of
 * reviews.shop go to reviews-v2.shop, with the ReferenceGrant in shop that lets it.
 */
export const BATCH_CONSUMER_ROUTE_YAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: batch-reviews, namespace: batch }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, namespace: shop }]
  rules:
    - backendRefs: [{ name: reviews-v2, namespace: shop, port: 9080 }]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: from-batch, namespace: shop }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: batch }]
  to: [{ group: "", kind: Service }]
`;
