import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { ControlPlaneMetrics } from '../metrics.js';
import { MeshStore } from '../store/mesh-store.js';
import { DirSource } from './dir-source.js';

const web = `kind: MeshService
metadata: { name: web, namespace: shop }
spec: { ports: [{ name: http, port: 80, protocol: http1 }], endpoints: [{ address: 10.0.0.1, port: 8080 }] }
`;

/** Real fs work runs on real time: wait for its effect after the fake clock fired the rescan. */
async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !fn(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!fn()) throw new Error(`timed out waiting for ${what}`);
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-dir-source-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

test('a missing directory keeps the source not ready (logged once, listed), retried on the rescan schedule until a scan succeeds', async () => {
  const clock = new FakeClock();
  const store = new MeshStore(clock, seededRandom(1));
  const lines: { msg: string; error?: string }[] = [];
  const logger = createLogger({ level: 'info', sink: (l) => lines.push(JSON.parse(l) as { msg: string }) });
  const dir = join(root, 'mesh');
  const source = new DirSource({ store, metrics: new ControlPlaneMetrics(), logger, clock, random: seededRandom(2), trustDomain: 'cluster.local', dir, displayDir: 'mesh', rescanMs: 1_000, watch: false });
  let started = false;
  const starting = source.start().then(() => (started = true));
  await until('the first scan failed', () => source.errors().length === 1);
  for (let i = 0; i < 3; i++) {
    clock.advance(1_000);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(store.ready).toBe(false);
  expect(started).toBe(false);
  expect(source.errors()).toEqual([expect.stringMatching(/^mesh: cannot read the directory: ENOENT/)]);
  expect(source.rejected()).toEqual([{ kind: '', namespace: '', name: '', path: '', reason: expect.stringMatching(/^cannot read the directory: ENOENT/), file: 'mesh' }]);
  // Four failed scans, one log line: it is logged again only if the problem changes.
  expect(lines.filter((l) => l.msg.startsWith('directory scan failed')).map((l) => l.msg)).toEqual(['directory scan failed; not ready until it succeeds']);

  await mkdir(dir);
  await writeFile(join(dir, 'web.yaml'), web);
  expect(store.ready).toBe(false); // not before the next scheduled rescan
  clock.advance(1_000);
  await starting;
  expect(store.ready).toBe(true);
  expect([...store.view.services.keys()]).toEqual(['web.shop']);
  expect(source.errors()).toEqual([]);
  await source.stop();
});

test('stop() ends a start() still waiting for a readable directory', async () => {
  const clock = new FakeClock();
  const store = new MeshStore(clock, seededRandom(1));
  const logger = createLogger({ level: 'error', sink: () => undefined });
  const source = new DirSource({ store, metrics: new ControlPlaneMetrics(), logger, clock, random: seededRandom(2), trustDomain: 'cluster.local', dir: join(root, 'none'), watch: false });
  const starting = source.start();
  await until('the first scan failed', () => source.errors().length === 1);
  await source.stop();
  await starting;
  expect(store.ready).toBe(false);
});
