import { podWorkload } from './pod-workload.js';

describe('podWorkload (Istio GetDeployMetaFromPod)', () => {
  test('a Deployment pod: the ReplicaSet name without the pod-template-hash', () => {
    expect(podWorkload({
      name: 'reviews-v1-7f6b8c9d5-abcde',
      labels: { 'pod-template-hash': '7f6b8c9d5', app: 'reviews', version: 'v1' },
      ownerReferences: [{ kind: 'ReplicaSet', name: 'reviews-v1-7f6b8c9d5', controller: true }],
    })).toEqual({ name: 'reviews-v1', app: 'reviews', version: 'v1' });
  });

  test('a ReplicaSet not made by a Deployment (no matching hash) is the workload', () => {
    expect(podWorkload({ name: 'rs-x1', labels: {}, ownerReferences: [{ kind: 'ReplicaSet', name: 'my-rs', controller: true }] }).name).toBe('my-rs');
    expect(podWorkload({ name: 'rs-x1', labels: { 'pod-template-hash': 'zzz' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'my-rs', controller: true }] }).name).toBe('my-rs');
  });

  test('a CronJob-made Job: the CronJob name; a plain Job: the Job name', () => {
    expect(podWorkload({ name: 'backup-29012345-q8x', ownerReferences: [{ kind: 'Job', name: 'backup-29012345', controller: true }] }).name).toBe('backup');
    expect(podWorkload({ name: 'migrate-abc12', ownerReferences: [{ kind: 'Job', name: 'migrate', controller: true }] }).name).toBe('migrate');
  });

  test('StatefulSet and DaemonSet pods: the owner', () => {
    expect(podWorkload({ name: 'db-0', ownerReferences: [{ kind: 'StatefulSet', name: 'db', controller: true }] }).name).toBe('db');
    expect(podWorkload({ name: 'agent-x7', ownerReferences: [{ kind: 'DaemonSet', name: 'agent', controller: true }] }).name).toBe('agent');
  });

  test('the controller reference wins over other owners', () => {
    expect(podWorkload({ name: 'p', ownerReferences: [{ kind: 'ConfigMap', name: 'cm' }, { kind: 'StatefulSet', name: 'db', controller: true }] }).name).toBe('db');
  });

  test('a bare pod is its own workload; at admission its generateName', () => {
    expect(podWorkload({ name: 'debug' })).toEqual({ name: 'debug', app: '', version: '' });
    expect(podWorkload({ generateName: 'worker-' }).name).toBe('worker');
  });

  test('app and version: the app.kubernetes.io labels win over app/version', () => {
    expect(podWorkload({ name: 'p', labels: { app: 'a', version: 'v', 'app.kubernetes.io/name': 'k-app', 'app.kubernetes.io/version': '2.0' } }))
      .toEqual({ name: 'p', app: 'k-app', version: '2.0' });
  });
});
