import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ControlPlane } from '../control-plane/server.js';
import type { DirSource } from '../control-plane/sources/dir-source.js';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';

/**
 * Telemetry resources from a real control plane (directory source) to real sidecars over
 * the discovery stream: the proxy's resolved settings (admin /config_dump `telemetry`)
 * follow the resources (mesh-wide, namespace, workload), revert when they are deleted,
 * keep the last good ones when a resource is bad, and a local config value wins over the
 * pushed one. With `concurrency: 2` every listener worker applies the push.
 */
const pki = testPki();
let plane: DirControlPlane, dir: string, cp: ControlPlane, source: DirSource;
let orders: Proxy, local: Proxy, workers: Proxy;
const workerLogs: string[] = [];

const pod = (name: string, app: string) => meshedPodYaml(name, 'demo', app, { app });
const telemetry = (ns: string, name: string, spec: string) => `apiVersion: policy.wren.io/v1alpha1
kind: Telemetry
metadata: { name: ${name}, namespace: ${ns} }
spec:
${spec}`;

interface Dumped {
  settings: { tracing: { samplingPercent: number }; accessLog: { enabled: boolean; samplingPercent: number } };
  from: { tracing: { samplingPercent: string }; accessLog: { enabled: string; samplingPercent: string } };
}
const dump = async (p: Proxy): Promise<Dumped> => ((await (await fetch(`http://127.0.0.1:${p.adminPort}/config_dump`)).json()) as { telemetry: Dumped }).telemetry;
const flat = (d: Dumped) => [d.settings.tracing.samplingPercent, d.from.tracing.samplingPercent, d.settings.accessLog.enabled, d.from.accessLog.enabled, d.settings.accessLog.samplingPercent, d.from.accessLog.samplingPercent];
const until = async (p: Proxy, want: unknown[], what: string) => {
  let last: unknown[] = [];
  await waitFor(async () => JSON.stringify((last = flat(await dump(p)))) === JSON.stringify(want), `${what} (last: ${JSON.stringify(last)})`);
};

beforeAll(async () => {
  plane = await startDirControlPlane({
    prefix: 'wren-telemetry-', trustDomain: 'cluster.local', seed: 3, mesh: { 'pods.yaml': `${pod('orders-0', 'orders')}---\n${pod('audit-0', 'audit')}---\n${pod('batch-0', 'batch')}` },
    dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 200 },
  });
  ({ cp, dir, source } = plane);
  const common = { pki, namespace: 'demo', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 } };
  orders = await startProxy({ ...common, serviceAccount: 'orders', pod: 'orders-0' });
  // Its own config sets trace sampling (in a cluster: the wren.io/tracing-sampling annotation).
  local = await startProxy({ ...common, serviceAccount: 'audit', pod: 'audit-0', config: { telemetry: { tracing: { samplingPercent: 50 } } } });
  workers = await startProxy({ ...common, serviceAccount: 'batch', pod: 'batch-0', config: { concurrency: 2 }, logs: workerLogs });
  await waitFor(() => [orders, local, workers].every((p) => p.snapshot.source.startsWith('control-plane:')), 'first snapshots');
});

afterAll(async () => {
  await Promise.all([orders, local, workers].map((p) => p?.close()));
  await plane?.close(100);
});

test('no Telemetry resource: the defaults, each shown as such', async () => {
  expect(await dump(orders)).toEqual({
    settings: { tracing: { samplingPercent: 1 }, accessLog: { enabled: false, samplingPercent: 100 } },
    from: { tracing: { samplingPercent: 'default' }, accessLog: { enabled: 'default', samplingPercent: 'default' } },
  });
  expect(flat(await dump(local))).toEqual([50, 'local', false, 'default', 100, 'default']);
});

test('mesh-wide, namespace and workload resources apply field by field; a local value wins; deleting them reverts', async () => {
  await replaceFile(join(dir, 'mesh.yaml'), telemetry('wren-system', 'mesh-default', '  tracing: [{ randomSamplingPercentage: 10 }]\n'));
  await until(orders, [10, 'pushed', false, 'default', 100, 'default'], 'mesh-wide tracing pushed');
  expect(orders.telemetry.current.tracing.samplingPercent).toBe(10);

  await replaceFile(join(dir, 'ns.yaml'), telemetry('demo', 'demo-logs', '  accessLogging: [{ randomSamplingPercentage: 25 }]\n'));
  await until(orders, [10, 'pushed', true, 'pushed', 25, 'pushed'], 'namespace access logs pushed');
  // The local trace sampling wins over the pushed one; the rest comes from the pushes.
  await until(local, [50, 'local', true, 'pushed', 25, 'pushed'], 'local wins over pushed');

  await replaceFile(join(dir, 'orders.yaml'), telemetry('demo', 'orders-debug', '  selector: { matchLabels: { app: orders } }\n  tracing: [{ randomSamplingPercentage: 100 }]\n  accessLogging: [{ disabled: true }]\n'));
  await until(orders, [100, 'pushed', false, 'pushed', 25, 'pushed'], 'workload resource over the namespace one');
  expect(flat(await dump(local))).toEqual([50, 'local', true, 'pushed', 25, 'pushed']); // not selected
  // The control plane shows what each proxy ACKed (only the fields some resource sets).
  const proxies = ((await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxies`)).json()) as { proxies: { identity: { pod: string }; telemetry: unknown }[] }).proxies;
  expect(proxies.find((p) => p.identity.pod === 'orders-0')?.telemetry).toEqual({ tracing: { samplingPercent: 100 }, accessLog: { enabled: false, samplingPercent: 25 } });

  for (const f of ['orders.yaml', 'ns.yaml', 'mesh.yaml']) await unlink(join(dir, f));
  await until(orders, [1, 'default', false, 'default', 100, 'default'], 'reverted to the defaults');
  await until(local, [50, 'local', false, 'default', 100, 'default'], 'local stays');
});

test('a bad Telemetry is rejected with its field path and the last good settings stay', async () => {
  await replaceFile(join(dir, 'ns.yaml'), telemetry('demo', 'demo-tracing', '  tracing: [{ randomSamplingPercentage: 30 }]\n'));
  await until(orders, [30, 'pushed', false, 'default', 100, 'default'], 'good version pushed');
  await replaceFile(join(dir, 'ns.yaml'), telemetry('demo', 'demo-tracing', '  tracing: [{ randomSamplingPercentage: 150 }]\n'));
  await waitFor(() => source.errors().length > 0, 'rejection');
  expect(source.errors()).toEqual(['mesh/ns.yaml: spec.tracing[0].randomSamplingPercentage: expected a number in 0..100, got 150']);
  await new Promise((r) => setTimeout(r, 300));
  expect(flat(await dump(orders))).toEqual([30, 'pushed', false, 'default', 100, 'default']);
  await unlink(join(dir, 'ns.yaml'));
  await until(orders, [1, 'default', false, 'default', 100, 'default'], 'reverted');
});

test('with concurrency 2 the push reaches every listener worker', async () => {
  await replaceFile(join(dir, 'batch.yaml'), telemetry('demo', 'batch', '  selector: { matchLabels: { app: batch } }\n  tracing: [{ randomSamplingPercentage: 42 }]\n'));
  await until(workers, [42, 'pushed', false, 'default', 100, 'default'], 'main thread');
  const applied = (worker: number) =>
    workerLogs.some((l) => {
      const r = JSON.parse(l) as { msg?: string; worker?: number; settings?: { tracing?: { samplingPercent?: number } } };
      return r.msg === 'telemetry settings applied' && r.worker === worker && r.settings?.tracing?.samplingPercent === 42;
    });
  await waitFor(() => applied(0) && applied(1), 'both workers applied the telemetry settings');
  await unlink(join(dir, 'batch.yaml'));
});
