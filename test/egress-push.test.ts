import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { ControlPlane } from '../control-plane/server.js';
import type { DirSource } from '../control-plane/sources/dir-source.js';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * Egress control from a real control plane (directory source, `--egress-mode
 * REGISTRY_ONLY`) to a real sidecar over the discovery stream: the mesh-wide mode and the
 * ExternalServices reach the proxy (/config_dump `egress`) and decide its traffic; a bad
 * ExternalService is rejected with its field path and the last good one stays; a proxy's
 * own egress.mode wins over the pushed one.
 */
const pki = testPki();
let plane: DirControlPlane, dir: string, cp: ControlPlane, source: DirSource, external: Server, externalPort: number;
let client: Proxy, local: Proxy;
let nextDst: { address: string; port: number } | undefined;

const externalService = (name: string, host: string, port: number | string) => `apiVersion: policy.wren.io/v1alpha1
kind: ExternalService
metadata: { name: ${name}, namespace: demo }
spec:
  hosts: [${host}]
  ports:
    - { number: ${port}, protocol: HTTP }
`;

interface Dumped { mode: string; modeSource: string; externalServices: { name: string; hosts: string[] }[] }
const dump = async (p: Proxy): Promise<Dumped> => ((await (await fetch(`http://127.0.0.1:${p.adminPort}/config_dump`)).json()) as { egress: Dumped }).egress;

function get(p: Proxy, host: string): Promise<{ status: number; error: string | undefined }> {
  nextDst = { address: '127.0.0.1', port: externalPort };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: p.outboundPort, path: '/', headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['wren-proxy-error'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  external = createHttpServer((_req, res) => res.end('external'));
  await new Promise<void>((r) => external.listen(0, '127.0.0.1', () => r()));
  externalPort = (external.address() as AddressInfo).port;
  plane = await startDirControlPlane({
    prefix: 'wren-egress-', trustDomain: 'cluster.local', seed: 5, mesh: { 'egress.yaml': externalService('api', 'api.example.com', externalPort) },
    dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 200 }, control: { egressMode: 'REGISTRY_ONLY' },
  });
  ({ cp, dir, source } = plane);
  const common = { pki, namespace: 'demo', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 }, originalDst: () => nextDst };
  client = await startProxy({ ...common, serviceAccount: 'client', pod: 'client-0' });
  local = await startProxy({ ...common, serviceAccount: 'legacy', pod: 'legacy-0', config: { egress: { mode: 'ALLOW_ANY' } } });
  await waitFor(() => [client, local].every((p) => p.snapshot.source.startsWith('control-plane:')), 'first snapshots');
});

afterAll(async () => {
  await Promise.all([client, local].map((p) => p?.close()));
  await plane?.close(100);
  external.close();
});

test('the mesh-wide REGISTRY_ONLY mode and the ExternalServices reach the proxy and decide its traffic', async () => {
  expect(await dump(client)).toMatchObject({ mode: 'REGISTRY_ONLY', modeSource: 'control-plane', externalServices: [{ name: 'demo/api', hosts: ['api.example.com'] }] });
  expect(await get(client, 'api.example.com')).toEqual({ status: 200, error: undefined });
  expect(await get(client, 'other.example.com')).toEqual({ status: 502, error: 'egress-refused' });
});

test("a proxy's own egress.mode wins over the pushed one", async () => {
  expect(await dump(local)).toMatchObject({ mode: 'ALLOW_ANY', modeSource: 'config' });
  expect(await get(local, 'other.example.com')).toEqual({ status: 200, error: undefined });
});

test('a bad ExternalService is rejected with its field path and the last good one stays; a fixed one is pushed', async () => {
  await replaceFile(join(dir, 'egress.yaml'), externalService('api', 'api.example.com', 70000));
  await waitFor(() => source.errors().length > 0, 'rejection');
  expect(source.errors()).toEqual(['mesh/egress.yaml: spec.ports[0].number: expected a number in 1..65535, got 70000']);
  expect((await dump(client)).externalServices).toMatchObject([{ name: 'demo/api', hosts: ['api.example.com'] }]);
  const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { errors: string[]; externalServices: { name: string; hosts: string[] }[] };
  expect(view).toMatchObject({ errors: [expect.stringContaining('spec.ports[0].number')], externalServices: [{ name: 'demo/api', hosts: ['api.example.com'] }] });
  expect(await get(client, 'api.example.com')).toEqual({ status: 200, error: undefined });
  await replaceFile(join(dir, 'egress.yaml'), externalService('api', 'other.example.com', externalPort));
  await waitFor(async () => (await dump(client)).externalServices[0]?.hosts[0] === 'other.example.com', 'the fixed resource pushed');
  expect(source.errors()).toEqual([]);
  expect(await get(client, 'other.example.com')).toEqual({ status: 200, error: undefined });
  expect(await get(client, 'api.example.com')).toEqual({ status: 502, error: 'egress-refused' });
});
