import { createServer, type Server } from 'node:http';
import { HealthMesh } from '../bench/health-mesh.js';
import { startProxy as startRawClient, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * Issue 14, mesh-wide health-based deregistration, end to end: ten client sidecars
 * subscribed over gRPC to a real control plane, three backends of one service in child
 * processes. One backend is killed with SIGKILL under load (its readiness in the source
 * never changes): the control plane withdraws it from every proxy on the reports of the
 * first ones to eject it, so all ten stop sending to it, including those that never
 * failed on it themselves; a single lying reporter withdraws nothing; the endpoint comes
 * back after the withdrawal's TTL.
 */
const TTL_MS = 4_000;
let mesh: HealthMesh;

beforeAll(async () => {
  mesh = await HealthMesh.start({ clients: 10, backends: 3, withdrawal: { ttlMs: TTL_MS } });
}, 60_000);

afterAll(async () => {
  await mesh?.close();
});

const withdrawal = async () =>
  ((await (await fetch(`http://127.0.0.1:${mesh.cp.adminPort}/debug/health`)).json()) as {
    endpoints: { port: number; reporters: { pod: string }[] }[];
    withdrawal: { withdrawn: { port: number; reporters: string[] }[]; decisions: { action: string; port: number; reason: string; reporters: string[] }[] };
  });
const cpMetrics = async () => (await fetch(`http://127.0.0.1:${mesh.cp.adminPort}/metrics`)).text();

test('a single lying reporter cannot withdraw anything, even on two streams', async () => {
  const liars: TestProxy[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const raw = startRawClient(`127.0.0.1:${mesh.cp.grpcPort}`, { pod: 'liar-0', services: ['api.default'], seed: i + 1 });
      liars.push(raw);
      await raw.client.onFirstSnapshot();
      raw.client.reportEjections(
        mesh.backendPorts.map((port) => ({ service: 'api.default', servicePort: 80, address: '127.0.0.1', port, kind: 'outlier-ejection' as const, reason: 'consecutive-5xx', ejectedForMs: 0 })),
      );
    }
    // The reports are in (so nothing was withdrawn for want of them) ...
    await waitFor(async () => (await withdrawal()).endpoints.length === 3 && (await withdrawal()).endpoints.every((e) => e.reporters.length === 2), 'both streams reported');
    // ... and nothing is withdrawn: not at the control plane, not in any proxy.
    await new Promise((r) => setTimeout(r, 300));
    expect((await withdrawal()).withdrawal.withdrawn).toEqual([]);
    expect(await cpMetrics()).not.toMatch(/^wren_cp_endpoint_withdrawals_total/m);
    for (const port of mesh.backendPorts) expect(mesh.endpointStates(port).every((e) => e?.ready === true)).toBe(true);
  } finally {
    await Promise.all(liars.map((l) => l.client.stop()));
  }
  await waitFor(async () => (await withdrawal()).endpoints.length === 0, 'liar reports gone with its streams');
});

test('two distinct reporters that do not use the service (not subscribed to it) cannot withdraw its endpoints', async () => {
  const others: TestProxy[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const raw = startRawClient(`127.0.0.1:${mesh.cp.grpcPort}`, { pod: `other-${i}`, services: ['billing.default'], seed: i + 7 });
      others.push(raw);
      await raw.client.onFirstSnapshot();
      raw.client.reportEjections([{ service: 'api.default', servicePort: 80, address: '127.0.0.1', port: mesh.backendPorts[0], kind: 'connect-failure', reason: '', ejectedForMs: 0 }]);
    }
    await waitFor(async () => /^wren_cp_health_report_rejected_entries_total 2$/m.test(await cpMetrics()), 'both reports seen and their entries rejected');
    expect((await withdrawal()).withdrawal.withdrawn).toEqual([]);
    expect(mesh.endpointStates(mesh.backendPorts[0]).every((e) => e?.ready === true)).toBe(true);
  } finally {
    await Promise.all(others.map((l) => l.client.stop()));
  }
});

test('a backend killed with SIGKILL under load is withdrawn from all ten proxies, which stop sending to it; it is restored after the TTL', async () => {
  const deadPort = mesh.backendPorts[2];
  mesh.startLoad(20);
  await new Promise((r) => setTimeout(r, 1_000));
  const exited = mesh.kill(2);
  const killedAt = performance.now();
  await exited;
  // Every proxy is sent the endpoint as not ready: withdrawn mesh-wide, whatever its own state.
  const stoppedAt: number[] = [];
  await waitFor(
    () => {
      mesh.endpointStates(deadPort).forEach((e, i) => {
        if (e && !e.ready && stoppedAt[i] === undefined) stoppedAt[i] = performance.now() - killedAt;
      });
      return stoppedAt.filter((x) => x !== undefined).length === 10;
    },
    'all ten proxies have the dead backend withdrawn',
    10_000,
  );
  // Attempts that started before the push may still be ending (a loaded event loop): wait for none in flight.
  await waitFor(() => mesh.endpointStates(deadPort).every((e) => e!.inflight === 0), 'no attempt in flight on the dead backend');
  const failuresAt = mesh.endpointStates(deadPort).map((e) => e!.failures);
  // Under continued load none of them starts another attempt there.
  await new Promise((r) => setTimeout(r, 1_000));
  expect(mesh.endpointStates(deadPort).map((e) => e!.failures + e!.inflight)).toEqual(failuresAt);
  const totals = await mesh.stopLoad();
  const ownFailures = failuresAt;
  console.log(
    `withdrawn in every proxy ${Math.round(Math.max(...stoppedAt))} ms after the kill (per proxy: ${stoppedAt.map(Math.round).join(', ')}); ` +
      `killed at ${Math.round(killedAt)} failed attempts on it per proxy: ${ownFailures.join(', ')}; client requests ${totals.sent}, failed ${totals.failed} ${totals.examples.join(' ')}`,
  );
  const h = await withdrawal();
  expect(h.withdrawal.withdrawn).toEqual([expect.objectContaining({ port: deadPort })]);
  expect(h.withdrawal.withdrawn[0].reporters.length).toBeGreaterThanOrEqual(2);
  // Connect failures are reported after 2 in a row, before each proxy's own ejection (5): usually they decide.
  expect(h.withdrawal.decisions).toContainEqual(expect.objectContaining({ action: 'withdrawn', port: deadPort, reason: expect.stringMatching(/^(connect-failure|outlier-ejection)$/) }));
  expect(await cpMetrics()).toMatch(/^wren_cp_endpoint_withdrawals_total\{service="api.default",reason="(connect-failure|outlier-ejection)"\} 1$/m);
  expect(await cpMetrics()).toMatch(/^wren_cp_withdrawn_endpoints 1$/m);
  // The other two stay in (never more than 50 % of three).
  for (const port of mesh.backendPorts.slice(0, 2)) expect(mesh.endpointStates(port).every((e) => e?.ready === true)).toBe(true);

  // It comes back on the same port; after the TTL the control plane gives it back to every proxy.
  const back: Server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  let hits = 0;
  await new Promise<void>((r) => back.listen(deadPort, '127.0.0.1', () => r()));
  try {
    await waitFor(() => mesh.endpointStates(deadPort).every((e) => e?.ready === true), 'restored in every proxy', TTL_MS + 5_000);
    expect((await withdrawal()).withdrawal.decisions).toContainEqual(expect.objectContaining({ action: 'restored', port: deadPort, reason: 'ttl' }));
    expect(await cpMetrics()).toMatch(/^wren_cp_endpoint_restorations_total\{service="api.default",reason="ttl"\} 1$/m);
    // Proxies that had not ejected it themselves send to it again.
    mesh.startLoad(20);
    await waitFor(() => hits > 0, 'traffic reaches the restored backend', 5_000);
  } finally {
    await mesh.stopLoad();
    back.closeAllConnections();
    await new Promise((r) => back.close(r));
  }
}, 60_000);
