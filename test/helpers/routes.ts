import type { ServiceRoute } from '../../contract/routes.js';
import { parseServiceRoutes } from '../../contract/parse-routes.js';

/** The parts of a Gateway API HTTPRoute / GRPCRoute manifest (v1.6.1) the route tests write. */
export interface RouteManifest {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly parentRefs: readonly { readonly group?: string; readonly kind?: string; readonly name: string; readonly namespace?: string; readonly port?: number }[];
    readonly rules?: readonly Record<string, unknown>[];
  };
}

type Raw = Record<string, unknown>;
const ms = (d: unknown): number => {
  if (d === undefined) return 0;
  const m = /^(\d+)(ms|s|m|h)$/.exec(String(d));
  if (!m) throw new Error(`unsupported duration ${String(d)}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'];
};

const pathModifier = (p: Raw | undefined) =>
  p && { type: p['type'], value: p['type'] === 'ReplaceFullPath' ? p['replaceFullPath'] : p['replacePrefixMatch'] };

function filter(f: Raw, ns: string): Raw {
  switch (f['type']) {
    case 'RequestRedirect': {
      const r = f['requestRedirect'] as Raw;
      return { type: 'RequestRedirect', requestRedirect: { ...r, path: pathModifier(r['path'] as Raw | undefined) } };
    }
    case 'URLRewrite': {
      const r = f['urlRewrite'] as Raw;
      return { type: 'URLRewrite', urlRewrite: { ...r, path: pathModifier(r['path'] as Raw | undefined) } };
    }
    case 'RequestMirror': {
      const r = f['requestMirror'] as Raw;
      const b = r['backendRef'] as Raw;
      return { type: 'RequestMirror', requestMirror: { backend: { name: b['name'], namespace: b['namespace'] ?? ns, port: b['port'] }, percent: r['percent'] } };
    }
    default:
      return f;
  }
}

/**
 * THE one place the route tests get their compiled routes from: Gateway API manifests as
 * the upstream conformance cases write them -> the model each parent Service carries
 * (contract/routes.ts), keyed `name.namespace`, in the given order (the tie-break order).
 * A stand-in for the control plane's compiler (gamma-cp): the lead can switch this one
 * function to compile through the control plane without touching the tests.
 */
export function compileRouteManifests(manifests: readonly RouteManifest[]): ReadonlyMap<string, readonly ServiceRoute[]> {
  const out = new Map<string, Raw[]>();
  for (const m of manifests) {
    const ns = m.metadata.namespace ?? 'default';
    const grpc = m.kind === 'GRPCRoute';
    const rules = (m.spec.rules ?? [{}]).map((r) => ({
      name: r['name'] ?? '',
      matches: ((r['matches'] as Raw[] | undefined) ?? []).map((x) =>
        grpc ? { grpc: x['method'], headers: x['headers'] } : { path: x['path'], method: x['method'], headers: x['headers'], queryParams: x['queryParams'] },
      ),
      filters: ((r['filters'] as Raw[] | undefined) ?? []).map((f) => filter(f, ns)),
      backends: ((r['backendRefs'] as Raw[] | undefined) ?? []).map((b) => ({
        name: b['name'], namespace: b['namespace'] ?? ns, port: b['port'], weight: b['weight'] ?? 1,
        filters: ((b['filters'] as Raw[] | undefined) ?? []).map((f) => filter(f, ns)),
      })),
      ...(r['retry'] ? { retry: { attempts: (r['retry'] as Raw)['attempts'], codes: (r['retry'] as Raw)['codes'], backoffMs: ms((r['retry'] as Raw)['backoff']) } } : {}),
      timeouts: { requestMs: ms((r['timeouts'] as Raw | undefined)?.['request']), backendRequestMs: ms((r['timeouts'] as Raw | undefined)?.['backendRequest']) },
    }));
    const byParent = new Map<string, number[]>();
    for (const p of m.spec.parentRefs) {
      const key = `${p.name}.${p.namespace ?? ns}`;
      const ports = byParent.get(key) ?? [];
      if (p.port !== undefined) ports.push(p.port);
      byParent.set(key, ports);
    }
    for (const [key, ports] of byParent) {
      const list = out.get(key) ?? [];
      list.push({ kind: m.kind, name: m.metadata.name, namespace: ns, ports, rules });
      out.set(key, list);
    }
  }
  return new Map([...out].map(([k, v]) => [k, parseServiceRoutes(JSON.parse(JSON.stringify(v)), `routes[${k}]`)]));
}
