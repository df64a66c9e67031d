import { ConfigError } from '../../common/schema.js';
import { parseEndpointSlice, parseK8sService, type KService } from './k8s-objects.js';
import { translateService } from './translate.js';

/** kube-dns as every cluster has it (`kubectl -n kube-system get svc,endpointslices`, trimmed). */
const kubeDns = {
  metadata: { name: 'kube-dns', namespace: 'kube-system' },
  spec: {
    clusterIP: '10.96.0.10',
    clusterIPs: ['10.96.0.10'],
    ports: [
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
      { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
      { name: 'metrics', port: 9153, protocol: 'TCP', targetPort: 9153 },
    ],
  },
};
const kubeDnsSlice = (addresses: string[], addressType = 'IPv4') => ({
  metadata: { name: 'kube-dns-x1', namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns' } },
  addressType,
  ports: [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
    { name: 'metrics', port: 9153, protocol: 'TCP' },
  ],
  endpoints: [{ addresses, conditions: { ready: true } }],
});

const parseError = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('Kubernetes objects the mesh cannot carry', () => {
  test('a UDP port is left out: kube-dns keeps its TCP 53 and 9153, and translates to a service the proxies take', () => {
    const svc = parseK8sService(kubeDns, '');
    expect(svc.ports.map((p) => [p.name, p.port])).toEqual([['dns-tcp', 53], ['metrics', 9153]]);
    const slice = parseEndpointSlice(kubeDnsSlice(['10.244.0.5']), '');
    expect(slice.ports.map((p) => p.name)).toEqual(['dns-tcp', 'metrics']);
    const r = translateService({ trustDomain: 'cluster.local', service: svc, slices: [slice], pod: () => undefined, policies: [] });
    expect(r.warnings).toEqual([]);
    expect(r.service!.ports.map((p) => [p.port, p.endpoints.map((e) => `${e.address}:${e.port}`)])).toEqual([
      [53, ['10.244.0.5:53']],
      [9153, ['10.244.0.5:9153']],
    ]);
  });

  test('a protocol the API does not have is refused with its path', () => {
    const bad = { ...kubeDns, spec: { ...kubeDns.spec, ports: [{ name: 'x', port: 53, protocol: 'QUIC' }] } };
    expect(parseError(() => parseK8sService(bad, 'items[0]'))).toMatch(/^items\[0\]\.spec\.ports\[0\]\.protocol: /);
  });

  test('two TCP ports with one number: the Service is refused, naming the second', () => {
    const dup = { ...kubeDns, spec: { ...kubeDns.spec, ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }, { name: 'c', port: 80, protocol: 'TCP' }] } };
    expect(parseError(() => parseK8sService(dup, 'items[3]'))).toBe('items[3].spec.ports[2].port: duplicate TCP port 80 (also ports[0])');
  });

  test('an EndpointSlice may name one target port twice', () => {
    const twice = { ...kubeDnsSlice(['10.244.0.5']), ports: [{ name: 'http', port: 8080 }, { name: 'http-alt', port: 8080 }] };
    expect(parseEndpointSlice(twice, '').ports.map((p) => p.name)).toEqual(['http', 'http-alt']);
  });

  test('an EndpointSlice port without a number (valid: unrestricted) is left out, the slice and its other ports kept', () => {
    const slice = { ...kubeDnsSlice(['10.244.0.5']), ports: [{ name: 'any', protocol: 'TCP' }, { name: 'http', port: 8080, protocol: 'TCP' }] };
    const parsed = parseEndpointSlice(slice, '');
    expect(parsed.ports).toEqual([{ name: 'http', port: 8080 }]);
    expect(parsed.endpoints.map((e) => e.addresses)).toEqual([['10.244.0.5']]);
  });

  test.each([
    ['10.0.0.300', 'IPv4'],
    ['010.000.000.004', 'IPv4'],
    ['10.0.0', 'IPv4'],
    ['fd00::3', 'IPv4'],
    ['10.0.0.4', 'IPv6'],
    ['fd00::3::4', 'IPv6'],
  ])('an EndpointSlice address %s in an %s slice is refused with its path', (address, type) => {
    expect(parseError(() => parseEndpointSlice(kubeDnsSlice([type === 'IPv4' ? '10.244.0.5' : 'fd00:244::5', address], type), ''))).toMatch(
      new RegExp(`^endpoints\\[0\\]\\.addresses\\[1\\]: expected an ${type} address, got "${address.replace(/\./g, '\\.')}"$`),
    );
  });

  test('a cluster IP that is not an address is no cluster IP', () => {
    const odd = { ...kubeDns, spec: { ...kubeDns.spec, clusterIP: undefined, clusterIPs: ['10.96.0.300', 'None', '10.96.0.11'] } };
    expect(parseK8sService(odd, '').clusterIPs).toEqual(['10.96.0.11']);
  });

  test('a translation the proxies would refuse is left out with a warning naming the field, not sent', () => {
    // Not reachable through the parsers above (they refuse it first): what the check after
    // the translation catches when the pieces only fail together.
    const svc: KService = { name: 'odd', namespace: 'shop', clusterIPs: [], externalName: false, ports: [
      { name: 'a', port: 80, protocol: 'http1' },
      { name: 'b', port: 80, protocol: 'http1' },
    ] };
    const r = translateService({ trustDomain: 'cluster.local', service: svc, slices: [], pod: () => undefined, policies: [] });
    expect(r.service).toBeNull();
    expect(r.warnings).toEqual(['odd.shop: left out, the proxies would refuse it: odd.shop.ports[1].port: duplicate port 80']);
  });
});

describe('port protocol selection (Istio ConvertProtocol)', () => {
  const protocols = (ports: { name: string; appProtocol?: string }[]): string[] =>
    parseK8sService({ metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.5', ports: ports.map((p, i) => ({ ...p, port: 8000 + i, protocol: 'TCP' })) } }, '').ports.map((p) => p.protocol);

  test('appProtocol, when set, decides and the port name is not read', () => {
    expect(protocols([
      { name: 'http', appProtocol: 'kubernetes.io/wss' }, // WebSocket over TLS: the proxy sees TLS
      { name: 'tcp-ws', appProtocol: 'kubernetes.io/ws' }, // WebSocket over cleartext: HTTP/1.1
      { name: 'http-db', appProtocol: 'postgresql' }, // a protocol the mesh does not name: detected
      { name: 'web', appProtocol: 'HTTP2' },
      { name: 'grpc-api' },
      { name: 'tcp-x', appProtocol: '' },
    ])).toEqual(['opaque', 'http1', 'detect', 'http2', 'grpc', 'opaque']);
  });

  test('a port named like a property of Object (constructor) is detected, not a function', () => {
    expect(protocols([{ name: 'constructor' }, { name: 'x', appProtocol: 'constructor' }])).toEqual(['detect', 'detect']);
    const r = translateService({
      trustDomain: 'cluster.local', slices: [], pod: () => undefined, policies: [],
      service: parseK8sService({ metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.5', ports: [{ name: 'constructor', port: 80, protocol: 'TCP' }] } }, ''),
    });
    expect(r.service?.ports[0].protocol).toBe('detect');
  });
});
