import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { httpText } from './helpers/http-text.js';
import type { Proxy } from '../proxy/proxy.js';
import type { MeshSnapshot } from '../contract/model.js';

/**
 * With listener workers the main thread takes a snapshot (routes, inbound policy, telemetry,
 * egress) before it sends it to the workers: a snapshot it refuses (applySnapshot throws, the
 * discovery client NACKs it) never reaches them. Until 2026-12-08 (adv67) the workers were
 * sent it first and served a version the main thread, and the control plane, never took.
 */
const pki = testPki();
let app: FakeApp;

beforeAll(async () => {
  app = await fakeApp('a');
});

afterAll(async () => {
  await app.close();
});

const poolOf = (p: Proxy) => (p as unknown as { pool: { latest: { seq: number; snapshot: MeshSnapshot } | null } }).pool;

test('a snapshot the main thread refuses (its egress settings do not build) is not sent to the workers', async () => {
  const web = meshService('web', 80, [{ appPort: app.port, proxy: null }]);
  const logs: string[] = [];
  const p = await startProxy({ pki, serviceAccount: 'main-refuses', logs, config: { concurrency: 2 }, services: [web] });
  try {
    const end = Date.now() + 15_000;
    while ((await httpText(p.adminPort, '/ready')).status !== 200 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    // An external service without ports: EgressPolicy cannot build it (the discovery client's
    // parser would refuse it first; a snapshot given directly is not parsed).
    const egress = { externalServices: [{ name: 'broken', hosts: ['example.com'], addresses: [] }] } as unknown as MeshSnapshot['egress'];
    expect(() => p.applySnapshot({ version: '2', source: 'test', services: [web], egress })).toThrow();
    expect(poolOf(p).latest?.snapshot.version).toBe('1');
    // A good version after it reaches every worker.
    p.applySnapshot({ version: '3', source: 'test', services: [web] });
    const end2 = Date.now() + 15_000;
    const applied = () => logs.filter((l) => l.includes('"msg":"config applied"') && l.includes('"worker":') && l.includes('"version":"3"')).length;
    while (applied() < 2 && Date.now() < end2) await new Promise((r) => setTimeout(r, 20));
    expect(applied()).toBe(2);
    expect(logs.some((l) => l.includes('"version":"2"') && l.includes('"worker":'))).toBe(false);
  } finally {
    await p.close();
  }
});
