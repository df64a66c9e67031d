import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DEFAULT_POLICY } from './defaults.js';
import type { Service } from './model.js';
import {
  endpointFromWire, fullResponse, loadDiscoveryProto, LOADER_OPTIONS, policyToJson, serviceFromWire, serviceToWire, snapshotFromFullResponse,
  type DiscoveryResponse,
} from './discovery.js';

const svc: Service = {
  name: 'web',
  namespace: 'shop',
  clusterIPs: ['10.96.0.1'],
  policy: { ...DEFAULT_POLICY, loadBalancer: { ...DEFAULT_POLICY.loadBalancer, kind: 'ring-hash', hashHeader: 'x-user' }, healthCheck: { kind: 'http', path: '/healthz', intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 3 } },
  ports: [
    {
      name: 'http', port: 80, protocol: 'http1',
      endpoints: [
        { address: '10.0.0.1', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 2, zone: 'a', ready: true, workload: { name: 'web-v1', namespace: 'shop', app: 'web', version: 'v1' } },
        { address: 'fd00::1', port: 8080, proxyPort: null, identity: '', weight: 1, zone: '', ready: true },
      ],
    },
  ],
};

describe('discovery contract converters', () => {
  test('policies travel as sparse JSON: only what differs from the defaults', () => {
    expect(policyToJson(DEFAULT_POLICY)).toBe('');
    expect(JSON.parse(policyToJson(svc.policy))).toEqual({
      loadBalancer: { kind: 'ring-hash', hashHeader: 'x-user' },
      healthCheck: { kind: 'http', path: '/healthz', intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 3 },
    });
  });

  test('service -> wire -> protobuf bytes -> wire -> service is lossless', () => {
    const proto = loadDiscoveryProto();
    const bytes = proto.encodeResponse(fullResponse('e-1', 'n', [svc]));
    const decoded = proto.decodeResponse(bytes);
    expect(decoded.services[0].clusterIps).toEqual(['10.96.0.1']);
    expect(decoded.services[0].ports[0].endpoints[1].proxyPort).toBe(0);
    const snap = snapshotFromFullResponse(decoded, 'control-plane:x');
    expect(snap).toEqual({ version: 'e-1', source: 'control-plane:x', services: [svc] });
    expect(Object.isFrozen(snap.services[0])).toBe(true);
  });

  test("a port's own policy travels beside the service's: '' = none, '{}' = the defaults, validated with its path", () => {
    const grpcPolicy = { ...DEFAULT_POLICY, circuitBreaker: { ...DEFAULT_POLICY.circuitBreaker, maxRequests: 5 } };
    const two: Service = {
      ...svc,
      ports: [
        { ...svc.ports[0], policy: DEFAULT_POLICY },
        { name: 'grpc', port: 9090, protocol: 'grpc', endpoints: svc.ports[0].endpoints, policy: grpcPolicy },
        { name: 'admin', port: 8081, protocol: 'http2', endpoints: [] },
      ],
    };
    const w = serviceToWire(two);
    expect(w.ports.map((p) => p.policyJson)).toEqual(['{}', JSON.stringify({ circuitBreaker: { maxRequests: 5 } }), '']);
    const proto = loadDiscoveryProto();
    const back = snapshotFromFullResponse(proto.decodeResponse(proto.encodeResponse(fullResponse('v', 'n', [two]))), 'cp').services[0];
    expect(back.ports[0].policy).toEqual(DEFAULT_POLICY);
    expect(back.ports[1].policy).toEqual(grpcPolicy);
    expect(back.ports[2].policy).toBeUndefined();
    expect(back.policy).toEqual(svc.policy);
    w.ports[1].policyJson = JSON.stringify({ retry: { attempts: 99 } });
    expect(() => serviceFromWire(w, 'services[0]')).toThrow(/^services\[0\]\.ports\[1\]\.policy\.retry\.attempts: expected a number in 0\.\.10/);
  });

  test('what arrives is validated with field paths', () => {
    const w = serviceToWire(svc);
    w.ports[0].endpoints[0].address = 'not an ip';
    expect(() => serviceFromWire(w, 'services[3]')).toThrow(/^services\[3\]\.ports\[0\]\.endpoints\[0\]\.address: expected an IPv4 or IPv6 address, got "not an ip"/);
    const w2 = serviceToWire(svc);
    w2.policyJson = JSON.stringify({ retry: { attempts: 99 } });
    expect(() => serviceFromWire(w2, 'services[0]')).toThrow(/^services\[0\]\.policy\.retry\.attempts: expected a number in 0\.\.10/);
    const w3 = serviceToWire(svc);
    w3.policyJson = '{oops';
    expect(() => serviceFromWire(w3, 'services[0]')).toThrow(/services\[0\]\.policy: invalid JSON/);
    expect(() => endpointFromWire({ address: '10.0.0.1', port: 0, proxyPort: 0, identity: '', weight: 0, zone: '', ready: true }, 'e')).toThrow(/^e\.port: /);
    // workload names and labels become metric label values at the caller: checked like Kubernetes names and label values
    const ep = { address: '10.0.0.1', port: 80, proxyPort: 0, identity: '', weight: 0, zone: '', ready: true };
    expect(() => endpointFromWire({ ...ep, workload: { name: 'web', namespace: 'shop', app: 'a b{}', version: '' } }, 'e')).toThrow(/^e\.workload\.app: /);
    expect(() => endpointFromWire({ ...ep, workload: { name: 'Web/x', namespace: 'shop', app: '', version: '' } }, 'e')).toThrow(/^e\.workload\.name: /);
    expect(endpointFromWire({ ...ep, workload: { name: 'web', namespace: 'shop', app: '', version: '' } }, 'e').workload).toEqual({ name: 'web', namespace: 'shop', app: '', version: '' });
  });
});

/**
 * The proto without Endpoint.opaque (field 10): what a proxy or control plane of the release
 * before it was built with. Its (de)serializers, as grpc-js would use them.
 */
function protoWithoutOpaque(): { encode: (r: DiscoveryResponse) => Buffer; decode: (b: Buffer) => DiscoveryResponse } {
  const text = readFileSync(join(process.cwd(), 'contract/discovery.proto'), 'utf8');
  const old = text.replace(/^\s*bool opaque = 10;\n/m, '');
  expect(old).not.toBe(text);
  const dir = mkdtempSync(join(tmpdir(), 'wren-proto-'));
  try {
    writeFileSync(join(dir, 'discovery.proto'), old);
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(dir, 'discovery.proto'), LOADER_OPTIONS)) as unknown as { wren: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } } };
    const m = pkg.wren.discovery.v1.Discovery.service.Stream;
    return { encode: (r) => m.responseSerialize(r), decode: (b) => m.responseDeserialize(b) as DiscoveryResponse };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Endpoint.opaque (a pod\'s own wren.io/opaque-ports, pushed to callers)', () => {
  const opaqueSvc: Service = {
    ...svc,
    ports: [{ ...svc.ports[0], endpoints: [{ ...svc.ports[0].endpoints[0], opaque: true }, svc.ports[0].endpoints[1]] }],
  };

  test('travels on the wire and back; absent when not declared', () => {
    const proto = loadDiscoveryProto();
    const back = snapshotFromFullResponse(proto.decodeResponse(proto.encodeResponse(fullResponse('v', 'n', [opaqueSvc]))), 'cp').services[0];
    expect(back.ports[0].endpoints[0].opaque).toBe(true);
    expect(back.ports[0].endpoints[1].opaque).toBeUndefined();
    expect(serviceToWire(svc).ports[0].endpoints[0].opaque).toBeUndefined();
  });

  test('wire-compatible both ways: an older proxy decodes the new field as unknown and skips it; an older control plane\'s endpoints are not opaque', () => {
    const current = loadDiscoveryProto();
    const old = protoWithoutOpaque();
    // New control plane -> old proxy: decoded without error, everything else intact.
    const seenByOld = old.decode(current.encodeResponse(fullResponse('v', 'n', [opaqueSvc])));
    expect(snapshotFromFullResponse(seenByOld, 'cp').services[0]).toEqual(svc);
    // Old control plane -> new proxy: no field 10, so not opaque.
    const fromOld = current.decodeResponse(old.encode(fullResponse('v', 'n', [svc]) as DiscoveryResponse));
    expect(snapshotFromFullResponse(fromOld, 'cp').services[0].ports[0].endpoints.map((e) => e.opaque ?? false)).toEqual([false, false]);
  });
});
