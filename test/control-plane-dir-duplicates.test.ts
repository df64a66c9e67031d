import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourceRejection } from '../control-plane/sources/source-rejection.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * An object (kind/namespace/name) defined twice in the directory: kept once, as Kubernetes
 * refuses a second create with AlreadyExists, and the other definition rejected by file and
 * document on /debug/rejected. In one file the first document stays; across files the one
 * in force stays, whatever the new file's name.
 */
const meshService = (name: string, address: string) => `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: ${name}, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints: [{ address: ${address}, port: 8080 }]
`;

let plane: DirControlPlane;
let p: TestProxy;
const rejected = async () => ((await (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/debug/rejected`)).json()) as { rejected: SourceRejection[] }).rejected;

beforeEach(async () => {
  plane = await startDirControlPlane({
    prefix: 'wren-cp-dir-duplicates-', trustDomain: 'cluster.local', seed: 5, dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 100 },
    mesh: { 'web.yaml': meshService('web', '10.0.0.1'), 'api.yaml': `${meshService('api', '10.0.1.1')}---\n${meshService('api', '10.9.9.9')}` },
  });
  p = startProxy(`127.0.0.1:${plane.cp.grpcPort}`);
  await p.client.onFirstSnapshot();
});
afterEach(async () => {
  await p.client.stop();
  await plane.close();
});

test('two documents of one file define the same object: the first is pushed, the second rejected', async () => {
  expect(endpointsOf(p.client.current(), 'api.shop')).toEqual(['10.0.1.1:8080']);
  expect(await rejected()).toEqual([{
    kind: 'MeshService', namespace: 'shop', name: 'api', path: 'metadata.name', file: 'mesh/api.yaml',
    reason: 'document 2: MeshService shop/api is already defined in document 1 of this file, which stays in force; this one is ignored',
  }]);
});

test('a new file that sorts first and defines an object in force is rejected; the object stays; it takes over once the first is deleted', async () => {
  await replaceFile(join(plane.dir, '00-new.yaml'), meshService('web', '10.6.6.6'));
  const r = await waitFor(async () => (await rejected()).find((x) => x.name === 'web'), 'the newcomer rejected');
  expect(r).toEqual({
    kind: 'MeshService', namespace: 'shop', name: 'web', path: 'metadata.name', file: 'mesh/00-new.yaml',
    reason: 'document 1: MeshService shop/web is already defined in mesh/web.yaml (document 1), which stays in force; this one is ignored',
  });
  expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080']);
  expect(plane.cp.store.view.services.get('web.shop')?.ports[0].endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
  // An edit of the file in force is still applied.
  await replaceFile(join(plane.dir, 'web.yaml'), meshService('web', '10.0.0.2'));
  await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.2:8080', 'the edit of web.yaml pushed');
  // Its definition gone, the remaining one is the object: no conflict left to report.
  await unlink(join(plane.dir, 'web.yaml'));
  await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.6.6.6:8080', '00-new.yaml in force');
  expect((await rejected()).map((x) => x.name)).toEqual(['api']);
});
