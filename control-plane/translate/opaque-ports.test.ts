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
