import { readFileSync } from 'node:fs';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import { ConfigError } from '../../common/schema.js';
import {
  parseEndpointSlice, parseK8sService, parseMeshService, parsePod, parseTrafficPolicyResource,
  type KEndpointSlice, type KPod, type KService, type KTrafficPolicy,
} from './k8s-objects.js';
import { translateCluster } from './translate.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/shop-cluster.json', import.meta.url), 'utf8')) as { items: { kind: string }[] };

function objects(items: { kind: string }[]) {
  return {
    services: items.filter((o) => o.kind === 'Service').map((o) => parseK8sService(o, '')) as KService[],
    slices: items.filter((o) => o.kind === 'EndpointSlice').map((o) => parseEndpointSlice(o, '')) as KEndpointSlice[],
    pods: items.filter((o) => o.kind === 'Pod').map((o) => parsePod(o, '')) as KPod[],
    policies: items.filter((o) => o.kind === 'TrafficPolicy').map((o) => parseTrafficPolicyResource(o, '')) as KTrafficPolicy[],
  };
}

describe('translate (pure): Kubernetes objects -> mesh model', () => {
  const { services, warnings } = translateCluster(objects(fixture.items), 'cluster.local');
  const web = services.find((s) => s.name === 'web')!;
  const db = services.find((s) => s.name === 'db')!;

  test('services: ExternalName skipped, headless has no cluster IPs, dual-stack keeps both', () => {
    expect(services.map((s) => `${s.name}.${s.namespace}`)).toEqual(['db.shop', 'web.shop']);
    expect(web.clusterIPs).toEqual(['10.96.12.7', 'fd00:10:96::c07']);
    expect(db.clusterIPs).toEqual([]);
  });

  test('port protocols come from appProtocol, then the port-name prefix', () => {
    expect(web.ports.map((p) => [p.name, p.port, p.protocol])).toEqual([
      ['http', 80, 'http1'],
      ['grpc-api', 9090, 'grpc'],
      ['admin', 8081, 'http2'],
    ]);
    expect(db.ports[0]).toMatchObject({ name: '', port: 5432, protocol: 'detect' });
  });

  test('only ready, non-terminating endpoints route; identities and proxy ports come from the pods', () => {
    expect(web.ports[0].endpoints).toEqual([
      // the workload from the pod's owner (ReplicaSet web-6d4cf56db6 of Deployment web) and its labels
      // its IPv6 address (fd00:10:244::5, the IPv6 slice) is the same pod: one endpoint, of the Service's primary family (IPv4, its first cluster IP), the other address carried along
      {
        address: '10.244.1.5', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'eu-west-1a', ready: true,
        workload: { name: 'web', namespace: 'shop', app: 'web', version: 'v1' }, additionalAddresses: ['fd00:10:244::5'],
      },
      // conditions {} -> ready (nil means ready); its sidecar listens on the annotation wren.io/proxy-port; no owner: the pod is its own workload
      { address: '10.244.3.7', port: 8080, proxyPort: 15106, identity: 'spiffe://cluster.local/ns/shop/sa/web-canary', weight: 1, zone: 'eu-west-1c', ready: true, workload: { name: 'web-6d4cf56db6-pqrst', namespace: 'shop', app: 'web', version: '' } },
    ]);
    // the IPv6 slice has no grpc-api port
    expect(web.ports[1].endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.244.1.5:9090', '10.244.3.7:9090']);
    // no targetRef: unmeshed; the FQDN slice is skipped
    expect(db.ports[0].endpoints).toEqual([{ address: '192.168.10.4', port: 5432, proxyPort: null, identity: '', weight: 1, zone: '', ready: true }]);
  });

  test('TrafficPolicy: the oldest of conflicting policies wins and the conflict is reported; port-scoped ones apply only to those ports', () => {
    expect(web.policy.loadBalancer.kind).toBe('least-request');
    expect(web.policy.retry.retryOn).toEqual(['5xx']);
    expect(web.policy.retry.attempts).toBe(3);
    expect(web.policy.timeouts.requestMs).toBe(15_000);
    expect(web.policy.outlierDetection).toEqual(DEFAULT_POLICY.outlierDetection);
    expect(warnings).toEqual([
      'db.shop: TrafficPolicy db-wrong-port names ports 3306, none of which the service has; it applies nowhere',
      'web.shop: 2 TrafficPolicies target it; web-fast (oldest) wins over web-newer',
    ]);
    expect(db.policy).toBe(DEFAULT_POLICY);
    expect(db.ports[0].policy).toBeUndefined();
  });

  test('TrafficPolicy spec.ports: the policy applies to the ports it names only, and there it wins over the service-wide one', () => {
    const tp = (name: string, createdAt: string, ports: number[], policy: object) =>
      parseTrafficPolicyResource({ kind: 'TrafficPolicy', metadata: { name, namespace: 'shop', creationTimestamp: createdAt }, spec: { targetRef: { kind: 'Service', name: 'web' }, ports, policy } }, '');
    const items = fixture.items.filter((o) => o.kind !== 'TrafficPolicy');
    const grpcOnly = tp('web-grpc', '2024-07-01T00:00:00Z', [9090], { circuitBreaker: { maxRequests: 5 }, timeouts: { requestMs: '2s' } });
    // Only a port-scoped policy: the other ports keep the defaults.
    let r = translateCluster({ ...objects(items), policies: [grpcOnly] }, 'cluster.local');
    let w = r.services.find((s) => s.name === 'web')!;
    expect(w.policy).toBe(DEFAULT_POLICY);
    expect(w.ports.map((p) => [p.port, p.policy?.circuitBreaker.maxRequests])).toEqual([[80, undefined], [9090, 5], [8081, undefined]]);
    expect(w.ports[1].policy!.timeouts.requestMs).toBe(2000);
    expect(r.warnings).toEqual([]);
    // With an older service-wide policy: it covers the other ports; the port-scoped one, though newer, wins on its port.
    const all = tp('web-all', '2024-01-01T00:00:00Z', [], { circuitBreaker: { maxRequests: 50 } });
    const grpcOlder = tp('web-grpc-old', '2024-06-01T00:00:00Z', [9090, 8081], { circuitBreaker: { maxRequests: 7 } });
    r = translateCluster({ ...objects(items), policies: [grpcOnly, all, grpcOlder] }, 'cluster.local');
    w = r.services.find((s) => s.name === 'web')!;
    expect(w.policy.circuitBreaker.maxRequests).toBe(50);
    expect(w.ports.map((p) => [p.port, p.policy?.circuitBreaker.maxRequests])).toEqual([[80, undefined], [9090, 7], [8081, 7]]);
    expect(r.warnings).toEqual(['web.shop:9090: 2 TrafficPolicies target it; web-grpc-old (oldest) wins over web-grpc']);
  });

  test('a pod is meshed when it has the sidecar (native or classic); its proxy port: the sidecar\'s declared port, else annotation wren.io/proxy-port, else 15006', () => {
    const pods = objects(fixture.items).pods;
    expect(pods.map((p) => [p.name.slice(-5), p.meshed, p.proxyPort, p.serviceAccount])).toEqual([
      ['abcde', true, 15006, 'web'], // native sidecar: init container wren-proxy, restartPolicy Always
      ['fghij', true, 15006, 'web'], // classic wren-proxy container
      ['pqrst', true, 15106, 'web-canary'], // classic container, port from annotation wren.io/proxy-port
    ]);
    expect(parsePod({ metadata: { name: 'p', annotations: { 'wren.io/injected': 'false' } }, spec: {} }, '').meshed).toBe(false);
    expect(parsePod({ metadata: { name: 'p' }, spec: {} }, '')).toMatchObject({ meshed: false, proxyPort: null, serviceAccount: 'default' });
  });

  test('a pod endpoint is held back until its Pod is known', () => {
    const items = fixture.items.filter((o) => !(o.kind === 'Pod' && (o as unknown as { metadata: { name: string } }).metadata.name.endsWith('abcde')));
    const w = translateCluster(objects(items), 'cluster.local').services.find((s) => s.name === 'web')!;
    expect(w.ports[0].endpoints.map((e) => e.address)).toEqual(['10.244.3.7']);
  });

  test('dual-stack: one endpoint per pod and port, of the Service\'s primary family; a pod ready in the other family only keeps that one; one address per endpoint (adv21)', () => {
    const svc = (clusterIPs: string[], ipFamilies: string[] = []) => ({
      kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIPs, ipFamilies, ports: [{ name: 'http', port: 80 }] },
    });
    const ep = (ip: string, pod?: string, ready = true) => ({ addresses: [ip], conditions: { ready }, ...(pod ? { targetRef: { kind: 'Pod', name: pod } } : {}) });
    const slice = (name: string, addressType: string, endpoints: unknown[]) => ({
      kind: 'EndpointSlice', metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } }, addressType, ports: [{ name: 'http', port: 8080 }], endpoints,
    });
    const pod = (name: string) => ({ kind: 'Pod', metadata: { name, namespace: 'shop' }, spec: { serviceAccountName: 'api', containers: [{ name: 'app' }] } });
    const slices = [
      // a dual-stack pod, a pod whose IPv4 endpoint is not ready (yet), an IPv4-only pod, and an address with no pod in each family
      slice('api-v4', 'IPv4', [ep('10.0.0.1', 'a'), ep('10.0.0.2', 'b', false), ep('10.0.0.3', 'c'), ep('192.168.0.9')]),
      slice('api-v6', 'IPv6', [ep('fd00::1', 'a'), ep('fd00::2', 'b'), ep('fd00::9')]),
    ];
    const endpoints = (service: unknown, more: unknown[] = []) =>
      translateCluster(objects([service, ...slices, ...more, pod('a'), pod('b'), pod('c'), pod('d')] as { kind: string }[]), 'cluster.local').services[0].ports[0].endpoints;
    const eps = (service: unknown, more: unknown[] = []) => endpoints(service, more).map((e) => e.address);
    // The pod's other address is carried along (a connection to it is pinned to the pod, proxy/outbound/route-table.ts), never balanced to.
    const others = (service: unknown, more: unknown[] = []) => Object.fromEntries(endpoints(service, more).filter((e) => e.additionalAddresses).map((e) => [e.address, e.additionalAddresses]));
    expect(others(svc(['10.96.0.1', 'fd00:96::1']))).toEqual({ '10.0.0.1': ['fd00::1'] });
    expect(others(svc(['fd00:96::1', '10.96.0.1']))).toEqual({ 'fd00::1': ['10.0.0.1'] });
    expect(eps(svc(['10.96.0.1', 'fd00:96::1']))).toEqual(['10.0.0.1', '10.0.0.3', '192.168.0.9', 'fd00::2', 'fd00::9']);
    // IPv6 first (an IPv6-primary cluster), or a headless Service by its ipFamilies
    expect(eps(svc(['fd00:96::1', '10.96.0.1']))).toEqual(['10.0.0.3', '192.168.0.9', 'fd00::1', 'fd00::2', 'fd00::9']);
    expect(eps(svc(['None'], ['IPv6', 'IPv4']))).toEqual(['10.0.0.3', '192.168.0.9', 'fd00::1', 'fd00::2', 'fd00::9']);
    // No family named at all: IPv4
    expect(eps(svc([]))).toEqual(['10.0.0.1', '10.0.0.3', '192.168.0.9', 'fd00::2', 'fd00::9']);
    // Addresses of one endpoint are one endpoint ("fungible": the first is used, as kube-proxy does)
    const multi = slice('api-v4-more', 'IPv4', [{ ...ep('10.0.0.4', 'd'), addresses: ['10.0.0.4', '10.0.0.44'] }]);
    expect(eps(svc(['10.96.0.1']), [multi])).toContain('10.0.0.4');
    expect(eps(svc(['10.96.0.1']), [multi])).not.toContain('10.0.0.44');
    expect(others(svc(['10.96.0.1']), [multi])['10.0.0.4']).toEqual(['10.0.0.44']);
  });

  test('invalid objects are rejected with their field path', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).message;
      }
      throw new Error('expected a ConfigError');
    };
    const svc = structuredClone(fixture.items[0]) as unknown as { spec: { ports: { port: unknown }[] } };
    svc.spec.ports[1].port = 'http';
    expect(bad(() => parseK8sService(svc, ''))).toBe('spec.ports[1].port: expected a number, got "http"');
    const tp = structuredClone(fixture.items[10]) as unknown as { spec: { policy: { loadBalancer: { kind: string } } } };
    tp.spec.policy.loadBalancer.kind = 'fastest';
    expect(bad(() => parseTrafficPolicyResource(tp, ''))).toMatch(/^spec\.policy\.loadBalancer\.kind: expected one of peak-ewma/);
    expect(bad(() => parseTrafficPolicyResource({ metadata: { name: 'x' }, spec: { targetRef: { kind: 'Deployment', name: 'web' } } }, ''))).toMatch(
      /^spec\.targetRef\.kind: expected one of Service, MeshService/,
    );
    expect(bad(() => parseEndpointSlice({ metadata: { name: 's' }, addressType: 'IPv4', endpoints: [{ addresses: [], conditions: {} }] }, ''))).toBe(
      'endpoints[0].addresses: expected at least 1 item(s)',
    );
    expect(bad(() => parsePod({ metadata: { name: 'p', annotations: { 'wren.io/proxy-port': 'x' } }, spec: {} }, ''))).toBe(
      'metadata.annotations["wren.io/proxy-port"]: expected a port number, got "x"',
    );
  });

  test('MeshService: parseService fields, with a spec.endpoints shorthand for every port', () => {
    const s = parseMeshService(
      {
        kind: 'MeshService',
        metadata: { name: 'cache', namespace: 'shop' },
        spec: { ports: [{ port: 6379, protocol: 'opaque' }, { port: 6380, endpoints: [{ address: '10.0.0.9', port: 7000 }] }], endpoints: [{ address: '10.0.0.1' }], policy: { timeouts: { connectMs: '2s' } } },
      },
      '',
    );
    expect(s.ports[0].endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.0.0.1:6379']);
    expect(s.ports[1].endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.0.0.9:7000']);
    expect(s.policy.timeouts.connectMs).toBe(2000);
    expect(() => parseMeshService({ kind: 'MeshService', metadata: { name: 'c' }, spec: { ports: [{ port: 1 }], endpoints: [{ address: 'x y' }] } }, '')).toThrow(
      /^spec\.endpoints\[0\]\.address: expected an IPv4 or IPv6 address, got "x y"/,
    );
    expect(() => parseMeshService({ kind: 'MeshService', metadata: { name: 'c' }, spec: { ports: [{ port: 1, bogus: 1 }] } }, '')).toThrow(/^spec\.ports\[0\]\.bogus: unknown field/);
  });
});
