import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlPlaneCommand } from './control-plane.js';

const sink = () => {
  const chunks: string[] = [];
  return { chunks, write: (s: string) => chunks.push(s), text: () => chunks.join('') };
};

describe('wren control-plane', () => {
  test('--help prints usage and exits 0', async () => {
    const out = sink();
    const err = sink();
    expect(await controlPlaneCommand(['--help'], out, err)).toBe(0);
    expect(out.text()).toMatch(/--source kubernetes\|dir:PATH/);
    // Every path the admin port serves (its 404 lists the same), the dashboard and /api/ included.
    // The kubeconfig order is client-node's loadFromDefault (KUBECONFIG, ~/.kube/config, in-cluster), not in-cluster first.
    expect(out.text()).toContain('default: KUBECONFIG, then ~/.kube/config,');
    for (const p of ['/debug/proxy-status', '/debug/proxy-config', '/debug/health', '/debug/rejected', '/dashboard/', '/api/stat', '/api/why']) expect(out.text()).toContain(p);
    expect(err.text()).toBe('');
  });

  test.each([
    [['--source', 'etcd'], /--source: expected kubernetes or dir:PATH/],
    [['--listen', 'nope'], /expected host:port/],
    [['--frobnicate'], /unknown argument "--frobnicate"/],
    [['--trust-domain'], /--trust-domain needs a value/],
  ])('usage error %j exits 2', async (argv, msg) => {
    const out = sink();
    const err = sink();
    expect(await controlPlaneCommand(argv, out, err)).toBe(2);
    expect(err.text()).toMatch(msg);
  });

  test('serves from a directory, answers /ready and /metrics, and shuts down on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wren-cp-cli-'));
    await writeFile(join(dir, 'web.yaml'), 'kind: MeshService\nmetadata: { name: web }\nspec:\n  ports: [{ port: 80, endpoints: [{ address: 10.0.0.1, port: 8080 }] }]\n');
    const out = sink();
    const err = sink();
    const done = controlPlaneCommand(['--source', `dir:${dir}`, '--listen', '127.0.0.1:0', '--admin=127.0.0.1:0', '--trust-domain', 'example.org'], out, err);
    let admin = 0;
    for (let i = 0; i < 400 && !admin; i++) {
      const line = err.chunks.map((c) => JSON.parse(c)).find((l) => l.msg === 'control plane listening');
      admin = line?.admin ?? 0;
      if (!admin) await new Promise((r) => setTimeout(r, 10));
    }
    expect(admin).toBeGreaterThan(0);
    let ready = 0;
    for (let i = 0; i < 200 && ready !== 200; i++) {
      ready = (await fetch(`http://127.0.0.1:${admin}/ready`)).status;
      if (ready !== 200) await new Promise((r) => setTimeout(r, 10));
    }
    expect(ready).toBe(200);
    expect((await fetch(`http://127.0.0.1:${admin}/live`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    for (const m of ['wren_cp_subscribers', 'wren_cp_pushes_total', 'wren_cp_push_latency_seconds', 'wren_cp_nacks_total', 'wren_cp_watch_restarts_total'])
      expect(metrics).toContain(m);
    expect(metrics).toMatch(/wren_cp_services 1/);
    process.emit('SIGTERM');
    expect(await done).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });
});
