import { parseEndpointSlice, parseK8sService, type KEndpointSlice, type KService } from './k8s-objects.js';
import { opaquePortsByPod, opaqueTargetPorts } from './opaque-ports.js';
import { ClusterIndex } from '../sources/cluster-index.js';
import { parsePod } from './k8s-objects.js';
import { withSidecar } from '../../test/helpers/meshed-pod.js';

/**
 * The target ports a pod's Services declare opaque, pushed with its inbound policy so its
 * sidecar splices a server-first protocol at once (translate/opaque-ports.ts).
 */
const service = (name: string, ports: { name: string; port: number; appProtocol?: string }[], ns = 'demo'): KService =>
  parseK8sService({ metadata: { name, namespace: ns }, spec: { clusterIP: '10.96.0.9', ports } }, '');

const slice = (name: string, svc: string, ports: { name: string; port: number }[], pods: string[], ns = 'demo'): KEndpointSlice =>
  parseEndpointSlice({
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports,
    endpoints: pods.map((p, i) => ({ addresses: [`10.244.0.${i + 10}`], targetRef: { kind: 'Pod', name: p } })),
  }, '');

test('a port declared opaque (appProtocol or a tcp- name) gives the pod its target port; an HTTP or undeclared port does not', () => {
  const db = service('db', [
    { name: 'mysql', port: 3306, appProtocol: 'mysql' },
    { name: 'tcp-greet', port: 6000 },
    { name: 'http', port: 80 },
    { name: 'admin', port: 9000 }, // no protocol named: detect
  ]);
  const s = slice('db-1', 'db', [{ name: 'mysql', port: 13306 }, { name: 'tcp-greet', port: 16000 }, { name: 'http', port: 8080 }, { name: 'admin', port: 9000 }], ['db-0']);
  expect(opaqueTargetPorts('db-0', [[db, s]])).toEqual([13306, 16000]);
  // A pod the slice does not list gets nothing from it.
  expect(opaqueTargetPorts('other', [[db, s]])).toEqual([]);
});

test('a named targetPort resolved differently per pod (one slice per resolution): each pod gets its own container port', () => {
  const db = service('db', [{ name: 'db', port: 5000, appProtocol: 'tcp' }]);
  const a = slice('db-a', 'db', [{ name: 'db', port: 6000 }], ['db-0']);
  const b = slice('db-b', 'db', [{ name: 'db', port: 6001 }], ['db-1']);
  expect(Object.fromEntries(opaquePortsByPod([db], [a, b]))).toEqual({ 'demo/db-0': [6000], 'demo/db-1': [6001] });
});

test('two Services targeting one pod port: opaque only when every one declares it so (the safe side: HTTP wins, the port is sniffed)', () => {
  const mysql = service('mysql', [{ name: 'tcp', port: 3306 }]);
  const web = service('web', [{ name: 'http', port: 80 }]);
  const mysql2 = service('mysql-ro', [{ name: 'db', port: 3306, appProtocol: 'mysql' }]);
  const s1 = slice('mysql-1', 'mysql', [{ name: 'tcp', port: 7000 }], ['p-0']);
  const s2 = slice('web-1', 'web', [{ name: 'http', port: 7000 }], ['p-0']);
  const s3 = slice('mysql-ro-1', 'mysql-ro', [{ name: 'db', port: 7000 }], ['p-0']);
  expect(Object.fromEntries(opaquePortsByPod([mysql, web], [s1, s2]))).toEqual({});
  expect(Object.fromEntries(opaquePortsByPod([mysql, mysql2], [s1, s3]))).toEqual({ 'demo/p-0': [7000] });
  // A slice of a Service not known (yet) declares nothing; a namesake Service in another namespace is not it.
  expect(Object.fromEntries(opaquePortsByPod([service('web', [{ name: 'tcp', port: 80 }], 'other'), mysql], [s1, s2]))).toEqual({ 'demo/p-0': [7000] });
});

test('the Kubernetes source index keeps each meshed pod\'s opaque ports as Services and slices change', () => {
  const idx = new ClusterIndex('cluster.local');
  const pod = parsePod(withSidecar({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'db-0', namespace: 'demo', labels: { 'wren.io/inject': 'enabled' } }, spec: { containers: [{ name: 'app', image: 'x' }] } }), '');
  idx.setPod('demo', 'db-0', pod);
  idx.setService('demo', 'db', service('db', [{ name: 'tcp-greet', port: 6000 }]));
  idx.setSlice('demo', 'db-1', slice('db-1', 'db', [{ name: 'tcp-greet', port: 16000 }], ['db-0']));
  expect(idx.flush().policy?.podOpaquePorts?.get('demo/db-0')).toEqual([16000]);
  // The Service now says HTTP: no longer opaque.
  idx.setService('demo', 'db', service('db', [{ name: 'http-greet', port: 6000 }]));
  const c = idx.flush();
  expect(c.policy).toBeDefined();
  expect(c.policy?.podOpaquePorts?.has('demo/db-0')).toBe(false);
  // Opaque again, then the pod leaves the slice.
  idx.setService('demo', 'db', service('db', [{ name: 'greet', port: 6000, appProtocol: 'tcp' }]));
  idx.setSlice('demo', 'db-1', slice('db-1', 'db', [{ name: 'greet', port: 16000 }], ['db-0']));
  expect(idx.flush().policy?.podOpaquePorts?.get('demo/db-0')).toEqual([16000]);
  idx.setSlice('demo', 'db-1', slice('db-1', 'db', [{ name: 'greet', port: 16000 }], []));
  expect(idx.flush().policy?.podOpaquePorts?.size).toBe(0);
});

/**
 * A pod's own wren.io/opaque-ports: pushed to callers with its endpoints (Endpoint.opaque),
 * so their outbound skips detection to those ports (proxy/outbound/route-table.ts).
 */
describe('a pod\'s own opaque ports (wren.io/opaque-ports) on its endpoints', () => {
  const podWith = (annotations: Record<string, string>, injected = true) => {
    const p = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'db-0', namespace: 'demo', labels: { 'wren.io/inject': 'enabled' }, annotations }, spec: { containers: [{ name: 'app', image: 'x' }] } };
    return parsePod(injected ? withSidecar(p) : p, '');
  };

  test('read as the injector reads it; the injected proxy\'s WREN_OPAQUE_PORTS wins (what the running sidecar splices); a malformed value declares nothing', () => {
    expect(podWith({ 'wren.io/opaque-ports': '4222,8000-8002' }).opaquePorts).toEqual([4222, 8000, 8001, 8002]);
    expect(podWith({}).opaquePorts).toEqual([]);
    expect(podWith({ 'wren.io/opaque-ports': 'mysql' }).opaquePorts).toEqual([]);
    // Not injected: the annotation still says which ports of the pod speak first.
    expect(podWith({ 'wren.io/opaque-ports': '4222' }, false).opaquePorts).toEqual([4222]);
    // Annotated after the sidecar started (env from the annotation at creation): the env is what runs.
    const injected = withSidecar({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'db-0', namespace: 'demo', labels: { 'wren.io/inject': 'enabled' }, annotations: { 'wren.io/opaque-ports': '4222' } }, spec: { containers: [{ name: 'app', image: 'x' }] } });
    const later = { ...injected, metadata: { ...injected.metadata, annotations: { ...injected.metadata.annotations, 'wren.io/opaque-ports': '9000' } } };
    expect(parsePod(later, '').opaquePorts).toEqual([4222]);
  });

  test('the index re-translates the pod\'s Services when its opaque ports change: the endpoint on a declared port carries opaque, the others not', () => {
    const idx = new ClusterIndex('cluster.local');
    idx.setPod('demo', 'db-0', podWith({ 'wren.io/opaque-ports': '16000' }));
    idx.setService('demo', 'db', service('db', [{ name: 'greet', port: 6000 }, { name: 'http', port: 80 }]));
    idx.setSlice('demo', 'db-1', slice('db-1', 'db', [{ name: 'greet', port: 16000 }, { name: 'http', port: 8080 }], ['db-0']));
    const eps = (c: ReturnType<ClusterIndex['flush']>) => c.upserts[0].ports.map((p) => p.endpoints.map((e) => e.opaque ?? false));
    expect(eps(idx.flush())).toEqual([[true], [false]]);
    idx.setPod('demo', 'db-0', podWith({}));
    expect(eps(idx.flush())).toEqual([[false], [false]]);
  });
});
