import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { ConfigError } from '../../common/schema.js';
import { validateResource } from '../../manifests/validate.js';
import { resolveInboundPolicy } from './inbound-policy.js';
import { parseRateLimitPolicyResource } from './ratelimit-objects.js';

const A = 'spiffe://cluster.local/ns/shop/sa/a';
const doc = (ns: string, name: string, spec: unknown) => ({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'RateLimitPolicy', metadata: { name, namespace: ns }, spec });
const rl = (ns: string, name: string, spec: unknown) => parseRateLimitPolicyResource(doc(ns, name, spec), '');
const web = { namespace: 'shop', labels: { app: 'web' } };
const view = (...rateLimitPolicies: ReturnType<typeof rl>[]) => ({ peerAuthentications: [], authorizationPolicies: [], rateLimitPolicies });

describe('RateLimitPolicy', () => {
  test('selected by namespace and selector into the workload inbound policy, by namespace/name; none selecting keeps the defaults object', () => {
    const p = resolveInboundPolicy(
      view(
        rl('shop', 'b-web', { selector: { matchLabels: { app: 'web' } }, identity: { requestsPerSecond: 5 } }),
        rl('shop', 'a-all', { total: { requestsPerSecond: 100, burst: 150 } }),
        rl('shop', 'db', { selector: { matchLabels: { app: 'db' } }, total: { requestsPerSecond: 1 } }),
        rl('wren-system', 'mesh', { total: { requestsPerSecond: 1 } }),
        rl('other', 'x', { total: { requestsPerSecond: 1 } }),
      ),
      web,
    );
    expect(p.rateLimits).toEqual([
      { name: 'shop/a-all', ports: [], total: { requestsPerSecond: 100, burst: 150 }, overrides: [], routes: [] },
      { name: 'shop/b-web', ports: [], identity: { requestsPerSecond: 5, burst: 5 }, overrides: [], routes: [] },
    ]);
    expect(resolveInboundPolicy(view(rl('shop', 'db', { selector: { matchLabels: { app: 'db' } }, total: { requestsPerSecond: 1 } })), web)).toBe(DEFAULT_INBOUND_POLICY);
  });

  // The CRD schema and the parser refuse the same mistakes at the same field path.
  test.each([
    [undefined, 'spec'],
    [{}, 'spec'],
    [{ total: { requestsPerSecond: 0 } }, 'spec.total.requestsPerSecond'],
    [{ total: { requestsPerSecond: -1 } }, 'spec.total.requestsPerSecond'],
    [{ total: { burst: 3 } }, 'spec.total.requestsPerSecond'],
    [{ identity: { requestsPerSecond: 1, burst: 0 } }, 'spec.identity.burst'],
    [{ identity: { requestsPerSecond: 1, burst: 1.5 } }, 'spec.identity.burst'],
    [{ identity: { requestsPerSecond: '5' } }, 'spec.identity.requestsPerSecond'],
    [{ identity: { requestsPerSecond: 1, rps: 2 } }, 'spec.identity.rps'],
    [{ overrides: [{ clients: ['web'], requestsPerSecond: 1 }] }, 'spec.overrides[0].clients[0]'],
    [{ overrides: [{ clients: [], requestsPerSecond: 1 }] }, 'spec.overrides[0].clients'],
    [{ routes: [{ match: { pathPrefix: 'api' }, requestsPerSecond: 1 }] }, 'spec.routes[0].match.pathPrefix'],
    [{ routes: [{ match: { method: 'GET POST' }, requestsPerSecond: 1 }] }, 'spec.routes[0].match.method'],
    [{ ports: [0], total: { requestsPerSecond: 1 } }, 'spec.ports[0]'],
    [{ limit: 5, total: { requestsPerSecond: 1 } }, 'spec.limit'],
  ])('%j is refused at %s by both', (spec, path) => {
    let parsed = '';
    try {
      parseRateLimitPolicyResource(doc('shop', 'p', spec), '');
    } catch (e) {
      parsed = (e as ConfigError).path;
    }
    expect(parsed).toBe(path);
    const crd = validateResource(doc('shop', 'p', spec));
    expect(crd.ok).toBe(false);
    if (!crd.ok) expect(crd.errors.map((e) => e.path)).toContain(path);
  });

  test('a full policy is valid for both', () => {
    const spec = {
      selector: { matchLabels: { app: 'web' } }, ports: [8080], total: { requestsPerSecond: 0.5 }, identity: { requestsPerSecond: 10, burst: 20 },
      overrides: [{ clients: [A], requestsPerSecond: 50 }], routes: [{ match: { pathPrefix: '/api', method: 'POST' }, requestsPerSecond: 5 }],
    };
    expect(validateResource(doc('shop', 'p', spec))).toEqual({ ok: true });
    expect(rl('shop', 'p', spec).policy.total).toEqual({ requestsPerSecond: 0.5, burst: 1 });
  });
});
