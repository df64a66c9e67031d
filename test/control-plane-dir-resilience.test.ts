import { mkdtemp, mkdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import type { SourceRejection } from '../control-plane/sources/source-rejection.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * The directory source against files and directories that cannot be read: one bad file
 * is that file's problem (the others keep flowing), and the source never reports ready,
 * nor sends proxies a view, that did not come from a successful read of the directory.
 */
const meshService = (name: string, addresses: string[], portValue = '8080') => `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: ${name}, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
${addresses.map((a, i) => `    - { address: ${a}, port: ${i === 0 ? `&port ${portValue}` : '*port'} }`).join('\n')}
`;
/** Valid YAML whose 101 aliases are more than yaml's maxAliasCount: toJS() throws. */
const aliasHeavy = meshService('other', Array.from({ length: 102 }, (_, i) => `10.1.${i >> 8}.${(i & 255) + 1}`));

let root: string;
let dir: string;
let cp: ControlPlane | null = null;
const proxies: TestProxy[] = [];

const start = async (opts: { rescanMs?: number; port?: number } = {}): Promise<ControlPlane> => {
  cp = await ControlPlane.start({
    listen: `127.0.0.1:${opts.port ?? 0}`, admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir, displayDir: 'mesh', watchDebounceMs: 10, rescanMs: opts.rescanMs ?? 100 }),
  });
  return cp;
};
const proxy = (c: ControlPlane): TestProxy => {
  const p = startProxy(`127.0.0.1:${c.grpcPort}`);
  proxies.push(p);
  return p;
};
const admin = async <T>(c: ControlPlane, path: string): Promise<T> => (await fetch(`http://127.0.0.1:${c.adminPort}${path}`)).json() as Promise<T>;
const readyStatus = async (c: ControlPlane) => (await fetch(`http://127.0.0.1:${c.adminPort}/ready`)).status;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rejected = async (c: ControlPlane) => (await admin<{ rejected: SourceRejection[] }>(c, '/debug/rejected')).rejected;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-cp-dir-resilience-'));
  dir = join(root, 'mesh');
  await mkdir(dir);
  await replaceFile(join(dir, 'web.yaml'), meshService('web', ['10.0.0.1', '10.0.0.2']));
});
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
  await cp?.close(100);
  cp = null;
  await rm(root, { recursive: true, force: true });
});

describe('a file whose YAML parses but cannot become data (too many aliases)', () => {
  test('added while running: it is rejected by name and every other file keeps flowing', async () => {
    const c = await start();
    await c.whenReady();
    const p = proxy(c);
    await p.client.onFirstSnapshot();
    await replaceFile(join(dir, 'other.yaml'), aliasHeavy);
    const r = await waitFor(async () => (await rejected(c)).find((x) => x.file === 'mesh/other.yaml'), 'other.yaml rejected');
    expect(r).toEqual({ kind: '', namespace: '', name: '', path: '', reason: expect.stringMatching(/^YAML: document 1: Excessive alias count/), file: 'mesh/other.yaml' });
    // An unrelated edit after it still reaches the proxy.
    await replaceFile(join(dir, 'web.yaml'), meshService('web', ['10.0.0.1']));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').length === 1, 'the web edit pushed');
    const view = await admin<{ errors: string[] }>(c, '/debug/view');
    expect(view.errors).toEqual([expect.stringMatching(/^mesh\/other\.yaml: YAML: document 1: Excessive alias count/)]);
  });

  test('present at start: the source is ready with every other file, not with an empty view', async () => {
    await replaceFile(join(dir, 'other.yaml'), aliasHeavy);
    const c = await start();
    await c.whenReady();
    expect((await fetch(`http://127.0.0.1:${c.adminPort}/ready`)).status).toBe(200);
    const snap = await proxy(c).client.onFirstSnapshot();
    expect(snap.services.map((s) => `${s.name}.${s.namespace}`)).toEqual(['web.shop']);
    expect(endpointsOf(snap, 'web.shop')).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
    expect((await rejected(c)).map((x) => x.file)).toEqual(['mesh/other.yaml']);
  });
});

describe('a directory that cannot be read', () => {
  test('at a restart: the control plane is not ready and sends nothing, so a reconnecting proxy keeps its config; it syncs once the directory is back', async () => {
    const first = await start();
    await first.whenReady();
    const p = proxy(first);
    await p.client.onFirstSnapshot();
    const port = first.grpcPort;
    await first.close(100);
    // The directory is away (a remount, a directory replaced non-atomically, a mistyped dir:) while it restarts.
    await rename(dir, `${dir}.away`);
    const c = await start({ port });
    await waitFor(async () => (await admin<{ proxies: unknown[] }>(c, '/debug/proxy-status')).proxies.length === 1, 'the proxy reconnected');
    await sleep(300); // several rescans, each failing
    expect(await readyStatus(c)).toBe(503);
    expect(c.store.ready).toBe(false);
    expect(p.applied).toHaveLength(1);
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
    // Visible, with the reason, where an operator looks.
    const problem = /^cannot read the directory: ENOENT: .*mesh/;
    expect(await rejected(c)).toEqual([{ kind: '', namespace: '', name: '', path: '', reason: expect.stringMatching(problem), file: 'mesh' }]);
    const view = await admin<{ ready: boolean; errors: string[]; services: unknown[] }>(c, '/debug/view');
    expect(view).toMatchObject({ ready: false, errors: [expect.stringMatching(/^mesh: cannot read the directory: ENOENT/)], services: [] });

    await replaceFile(join(`${dir}.away`, 'web.yaml'), meshService('web', ['10.0.0.3']));
    await rename(`${dir}.away`, dir);
    await waitFor(() => p.applied.length === 2, 'a snapshot from the synced source');
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.3:8080']);
    expect(await readyStatus(c)).toBe(200);
    expect(await rejected(c)).toEqual([]);
  });

  test('later: the last good view stays and the problem is listed until the directory is back', async () => {
    const c = await start();
    await c.whenReady();
    const p = proxy(c);
    await p.client.onFirstSnapshot();
    await rename(dir, `${dir}.away`);
    await waitFor(async () => (await rejected(c)).length === 1, 'the directory problem listed');
    expect((await rejected(c))[0]).toMatchObject({ file: 'mesh', reason: expect.stringMatching(/^cannot read the directory: ENOENT/) });
    expect(await readyStatus(c)).toBe(200);
    expect(c.store.view.services.get('web.shop')?.ports[0].endpoints.map((e) => e.address)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
    // Back, as a new directory with an edit: read (and watched) again, the problem cleared.
    await replaceFile(join(`${dir}.away`, 'web.yaml'), meshService('web', ['10.0.0.3']));
    await rename(`${dir}.away`, dir);
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.3:8080', 'the edit pushed');
    expect(await rejected(c)).toEqual([]);
  });
});
