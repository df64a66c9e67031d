import { injectWorkloads, podTemplatePath } from './inject-workloads.js';

const template = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'app', image: 'x' }] } };

test('finds the pod template of every workload kind', () => {
  expect(podTemplatePath({ kind: 'CronJob' })).toEqual(['spec', 'jobTemplate', 'spec', 'template']);
  expect(podTemplatePath({ kind: 'Deployment' })).toEqual(['spec', 'template']);
  expect(podTemplatePath({ kind: 'Pod' })).toEqual([]);
  expect(podTemplatePath({ kind: 'Service' })).toBeUndefined();
  expect(podTemplatePath({ kind: 'toString' })).toBeUndefined();
});

test('injects a CronJob without touching the input', () => {
  const cj = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly' }, spec: { schedule: '@daily', jobTemplate: { spec: { template } } } };
  const before = structuredClone(cj);
  const r = injectWorkloads(cj);
  expect(cj).toEqual(before);
  expect(r.injected).toBe(1);
  expect(r.report).toEqual(['CronJob/nightly: injected (selected by the webhook configuration)']);
  const t = (r.object as typeof cj).spec.jobTemplate.spec.template as unknown as { spec: { initContainers: { name: string; restartPolicy?: string }[] } };
  // Native sidecar: the Job completes when the app exits (the proxy is an init container).
  expect(t.spec.initContainers.find((c) => c.name === 'wren-proxy')?.restartPolicy).toBe('Always');
});

test('v1 List items are injected; other kinds pass through as the same object', () => {
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } };
  const list = { apiVersion: 'v1', kind: 'List', items: [svc, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { template } }] };
  const r = injectWorkloads(list);
  expect(r.injected).toBe(1);
  expect((r.object as typeof list).items[0]).toBe(svc);
  expect(injectWorkloads(svc).object).toBe(svc);
});

test('workloads in kube-system or wren-system are never injected, whatever their template says (as the webhooks never see them; linkerd inject refuses kube-system too)', () => {
  for (const ns of ['kube-system', 'wren-system']) {
    const d = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'coredns', namespace: ns }, spec: { template: { ...template, metadata: { labels: { 'wren.io/inject': 'enabled' } } } } };
    const r = injectWorkloads(d);
    expect(r).toEqual({ object: d, report: [`Deployment/coredns: skipped (pods in ${ns} are never injected)`], injected: 0 });
  }
  // Any other namespace, or none given: injected.
  expect(injectWorkloads({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop' }, spec: { template } }).injected).toBe(1);
});
