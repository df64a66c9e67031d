import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { httpText } from './helpers/http-text.js';
import { shopWebControlPlane, shopWebYaml } from './helpers/discovery-stream.js';
import type { DirControlPlane } from './helpers/dir-control-plane.js';
import type { Proxy } from '../proxy/proxy.js';
import type { MeshSnapshot } from '../contract/model.js';

/**
 * A listener worker that cannot apply a config snapshot keeps serving its previous one
 * (worker-main.ts posts 'apply-failed'). The proxy must not take that version as applied:
 * /ready is 503 naming it, it is counted, and the control plane gets a NACK, not an ACK.
 * Until 2026-12-08 (adv67) the pool recorded the failed version as applied (ready, ACKed).
 *
 * The failure is injected where the pool hears it: worker 0's 'applied' answers are turned
 * into the 'apply-failed' a worker posts when its Proxy.applySnapshot throws.
 */
const pki = testPki();
let app: FakeApp;

beforeAll(async () => {
  app = await fakeApp('a');
});

afterAll(async () => {
  await app.close();
});

type Msg = { t: string; seq?: number };
interface PoolView {
  latest: { seq: number; snapshot: MeshSnapshot } | null;
  slots: { worker: { emit(ev: string, ...a: unknown[]): boolean } | null }[];
}
const poolOf = (p: Proxy) => (p as unknown as { pool: PoolView }).pool;

/** Worker 0's 'applied' answers become 'apply-failed' while `failing()`. */
function injectApplyFailure(p: Proxy, failing: () => boolean): void {
  const w = poolOf(p).slots[0].worker!;
  const emit = w.emit.bind(w);
  w.emit = (ev: string, ...a: unknown[]) => {
    const m = a[0] as Msg | undefined;
    if (ev === 'message' && m?.t === 'applied' && failing()) return emit('message', { t: 'apply-failed', seq: m.seq, error: 'injected: cannot apply' });
    return emit(ev, ...a);
  };
}

const admin = (p: Proxy, path: string) => httpText(p.adminPort, path);

async function until(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

test('a worker that cannot apply a snapshot: not ready, counted, whenApplied rejects; the next version it applies makes it ready again', async () => {
  const logs: string[] = [];
  const web = meshService('web', 80, [{ appPort: app.port, proxy: null }]);
  const p = await startProxy({ pki, serviceAccount: 'apply-fails', logs, config: { concurrency: 2 }, services: [web] });
  try {
    await until('ready', async () => (await admin(p, '/ready')).status === 200);
    let failing = true;
    injectApplyFailure(p, () => failing);
    p.applySnapshot({ version: '2', source: 'test', services: [web] });
    await expect(p.whenApplied()).rejects.toThrow('listener worker 0 could not apply the config: injected: cannot apply');
    expect(await admin(p, '/ready')).toEqual({ status: 503, body: expect.stringContaining('1 of 2 listener workers could not apply the config (worker 0: injected: cannot apply)') });
    expect(sample((await admin(p, '/metrics')).body, 'wren_worker_apply_failures_total')).toBe(1);
    expect(logs.some((l) => l.includes('"code":"WORKER_APPLY_FAILED"'))).toBe(true);
    failing = false;
    p.applySnapshot({ version: '3', source: 'test', services: [web] });
    await p.whenApplied();
    expect((await admin(p, '/ready')).status).toBe(200);
  } finally {
    await p.close();
  }
});

/** Worker 0's 'applied' answers are lost while `stuck()`: a worker whose event loop hangs never answers. */
function injectStuckWorker(p: Proxy, stuck: () => boolean): void {
  const w = poolOf(p).slots[0].worker!;
  const emit = w.emit.bind(w);
  w.emit = (ev: string, ...a: unknown[]) => {
    const m = a[0] as Msg | undefined;
    if (ev === 'message' && m?.t === 'applied' && stuck()) return true;
    return emit(ev, ...a);
  };
}

test('a worker that never answers a snapshot: refused after limits.workerApplyTimeoutMs (the config stream is not held), counted, not ready until it catches up', async () => {
  const logs: string[] = [];
  const web = meshService('web', 80, [{ appPort: app.port, proxy: null }]);
  const p = await startProxy({ pki, serviceAccount: 'apply-stuck', logs, config: { concurrency: 2, limits: { workerApplyTimeoutMs: '300ms' } }, services: [web] });
  try {
    await until('ready', async () => (await admin(p, '/ready')).status === 200);
    let stuck = true;
    injectStuckWorker(p, () => stuck);
    p.applySnapshot({ version: '2', source: 'test', services: [web] });
    // Without the bound this promise never settles (the discovery client would never answer the version).
    await expect(p.whenApplied()).rejects.toThrow('listener worker 0 did not apply the config within limits.workerApplyTimeoutMs (300 ms)');
    expect((await admin(p, '/ready')).status).toBe(503);
    expect((await admin(p, '/metrics')).body).toMatch(/^wren_limit_exceeded_total\{direction="discovery",limit="worker-apply-timeout"\} 1$/m);
    expect(logs.some((l) => l.includes('"code":"WORKER_APPLY_TIMEOUT"'))).toBe(true);
    stuck = false;
    p.applySnapshot({ version: '3', source: 'test', services: [web] });
    await p.whenApplied();
    await until('ready again', async () => (await admin(p, '/ready')).status === 200);
  } finally {
    await p.close();
  }
});

describe('from the control plane', () => {
  let mesh: DirControlPlane;
  const cpLogs: string[] = [];

  beforeAll(async () => {
    mesh = await shopWebControlPlane('wren-worker-nack-', cpLogs);
  });

  afterAll(async () => {
    await mesh.kill();
  });

  test('the version a worker could not apply is NACKed with its reason; one every worker applied is ACKed', async () => {
    const logs: string[] = [];
    const p = await startProxy({ pki, namespace: 'shop', serviceAccount: 'web', logs, controlPlane: `127.0.0.1:${mesh.cp.grpcPort}`, config: { concurrency: 2 } });
    try {
      type Row = { ackedVersion: string; nacks: number; lastNack: { version: string; detail: string } | null };
      const row = () => mesh.cp.discovery.debugProxies()[0] as unknown as Row | undefined;
      await until('the first version ACKed', () => (row()?.ackedVersion ?? '') !== '');
      await until('ready', async () => (await admin(p, '/ready')).status === 200);
      const first = row()!.ackedVersion;
      let failing = true;
      injectApplyFailure(p, () => failing);
      await writeFile(join(mesh.dir, 'web.yaml'), shopWebYaml(8081));
      await until('a NACK', () => (row()?.nacks ?? 0) > 0);
      expect(row()!.lastNack!.detail).toContain('listener worker 0 could not apply the config: injected: cannot apply');
      expect(row()!.ackedVersion).toBe(first);
      expect((await admin(p, '/ready')).status).toBe(503);
      // Said as it is: the main thread and the other worker run that version; "keeping the last good config" was not true.
      expect(logs.some((l) => l.includes('a listener worker did not take a discovery update; NACKed'))).toBe(true);
      expect(logs.some((l) => l.includes('keeping the last good config'))).toBe(false);
      failing = false;
      await writeFile(join(mesh.dir, 'web.yaml'), shopWebYaml(8082));
      await until('the next version ACKed', () => row()!.ackedVersion !== first);
      await until('ready again', async () => (await admin(p, '/ready')).status === 200);
    } finally {
      await p.close();
    }
  });
});
