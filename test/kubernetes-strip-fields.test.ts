import type * as k8s from '@kubernetes/client-node';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { LAST_APPLIED_ANNOTATION } from '../control-plane/sources/strip-fields.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * The informers' cache holds no managedFields and no kubectl last-applied annotation (strip-fields.ts):
 * neither from the initial list nor from watch events, while everything the control plane reads
 * (the pod's identity, its other annotations, the slice's endpoints) still works.
 * Fake API server at the HTTP level <- real client-node informers -> store -> real gRPC -> DiscoveryClient.
 */
describe('Kubernetes source: unused fields stripped before caching', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  let source: KubernetesSource;
  const proxies: TestProxy[] = [];

  const managedFields = [
    { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-12-01T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } } } },
    { manager: 'kubelet', operation: 'Update', apiVersion: 'v1', time: '2026-12-01T10:00:05Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:podIP': {} } }, subresource: 'status' },
  ];
  const decorate = (o: Record<string, unknown>): Record<string, unknown> => {
    const md = o.metadata as Record<string, unknown>;
    return {
      ...o,
      metadata: { ...md, managedFields, annotations: { ...((md.annotations as Record<string, string>) ?? {}), [LAST_APPLIED_ANNOTATION]: JSON.stringify(o), 'example.com/kept': 'yes' } },
    };
  };

  const cached = (resource: string): readonly k8s.KubernetesObject[] => {
    const r = (source as unknown as { resources: { name: string; informer: k8s.ListWatch<k8s.KubernetesObject> }[] }).resources.find((x) => x.name === resource)!;
    return r.informer.list();
  };
  const expectStripped = (objs: readonly k8s.KubernetesObject[]): void => {
    expect(objs.length).toBeGreaterThan(0);
    for (const o of objs) {
      expect(o.metadata?.managedFields).toBeUndefined();
      expect(o.metadata?.annotations?.[LAST_APPLIED_ANNOTATION]).toBeUndefined();
      expect(o.metadata?.annotations?.['example.com/kept']).toBe('yes');
      expect(o.metadata?.resourceVersion).toBeTruthy();
    }
  };

  beforeEach(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    api.apply('services', decorate(serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }])));
    api.apply('pods', decorate(podJson('web-a', 'shop', 'web-sa', '10.0.0.1')));
    api.apply('endpointslices', decorate(endpointSliceJson('web-x', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }])));
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => (source = new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } })),
    });
    await cp.whenReady();
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await api.close();
  });

  test('listed objects are cached without managedFields and last-applied, and still translate', async () => {
    expectStripped(cached('pods'));
    expectStripped(cached('services'));
    expectStripped(cached('endpointslices'));
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`);
    proxies.push(p);
    await p.client.onFirstSnapshot();
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080']);
    expect(p.client.current()!.services.find((s) => s.name === 'web')!.ports[0].endpoints[0].identity).toBe('spiffe://cluster.local/ns/shop/sa/web-sa');
  });

  test('objects that arrive by watch are cached stripped too', async () => {
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`);
    proxies.push(p);
    await p.client.onFirstSnapshot();
    api.apply('pods', decorate(podJson('web-b', 'shop', 'web-sa', '10.0.0.2')));
    api.apply('endpointslices', decorate(endpointSliceJson('web-x', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }, { ip: '10.0.0.2', pod: 'web-b' }])));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').length === 2, 'the watched pod and slice arrive');
    expect(cached('pods').map((o) => o.metadata?.name).sort()).toEqual(['web-a', 'web-b']);
    expectStripped(cached('pods'));
    expectStripped(cached('endpointslices'));
  });
});
