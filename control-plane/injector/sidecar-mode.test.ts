import { Registry } from 'prom-client';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { AutoSidecarMode, parseKubernetesVersion, runsNativeSidecars, type KubernetesVersion } from './sidecar-mode.js';

test('parseKubernetesVersion: major/minor, a decorated minor ("29+"), else gitVersion; runsNativeSidecars from 1.29', () => {
  expect(parseKubernetesVersion({ major: '1', minor: '29+' })).toEqual({ major: 1, minor: 29 });
  expect(parseKubernetesVersion({ major: '', minor: '', gitVersion: 'v1.30.1-eks-1' })).toEqual({ major: 1, minor: 30 });
  expect(parseKubernetesVersion({ gitVersion: 'unknown' })).toBeUndefined();
  // An answer that is no object (a proxy's page, JSON null) carries no version, and throws nothing.
  for (const v of [null, 'v1.30.0', 130, [], { major: {}, minor: '30' }]) expect(parseKubernetesVersion(v)).toBeUndefined();
  expect(parseKubernetesVersion({ major: 1, minor: 30 })).toEqual({ major: 1, minor: 30 });
  expect([[1, 28], [1, 29], [1, 35], [2, 0]].map(([major, minor]) => runsNativeSidecars({ major, minor }))).toEqual([false, true, true, true]);
});

/** AutoSidecarMode on a fake clock, over a /version the test answers (a value, an error, or never). */
function setup() {
  const clock = new FakeClock();
  const registry = new Registry();
  const lines: { level: string; msg: string }[] = [];
  const signals: AbortSignal[] = [];
  let next: () => Promise<KubernetesVersion> = async () => ({ major: '1', minor: '28', gitVersion: 'v1.28.1' });
  let reads = 0;
  const auto = new AutoSidecarMode({
    readVersion: (signal) => (reads++, signals.push(signal), next()), clock, registry, intervalMs: 60_000, timeoutMs: 5000,
    logger: createLogger({ level: 'debug', sink: (l) => void lines.push(JSON.parse(l) as { level: string; msg: string }) }),
  });
  const errors = async () => (await registry.getSingleMetricAsString('wren_cp_injector_version_errors_total')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  /** Runs the timers due and lets the read's promise settle. */
  const advance = async (ms: number) => {
    clock.advance(ms);
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { clock, auto, lines, errors, advance, reads: () => reads, signals: () => signals, answer: (f: () => Promise<KubernetesVersion>) => void (next = f) };
}

test('re-read every interval: a cluster upgraded from 1.28 to 1.29 gets native sidecars for new pods without a restart', async () => {
  const s = setup();
  await s.auto.start();
  expect(s.auto.nativeSidecars).toBe(false);
  s.answer(async () => ({ major: '1', minor: '29', gitVersion: 'v1.29.2' }));
  await s.advance(59_999);
  expect(s.reads()).toBe(1);
  await s.advance(1);
  expect(s.reads()).toBe(2);
  expect(s.auto.nativeSidecars).toBe(true);
  expect(s.lines.map((l) => l.msg)).toEqual([
    '--sidecar-mode auto: Kubernetes v1.28.1: injecting classic sidecars (native sidecars need 1.29)',
    '--sidecar-mode auto: Kubernetes v1.29.2: injecting native sidecars (>= 1.29)',
  ]);
  s.auto.stop();
});

test('no version read yet: classic; a failure after a read keeps the version last read; one warning per failure streak, every failure counted', async () => {
  const s = setup();
  s.answer(async () => Promise.reject(Object.assign(new Error('HTTP-Code: 503\nMessage: x'), { code: 503 })));
  await s.auto.start();
  expect(s.auto.nativeSidecars).toBe(false);
  await s.advance(60_000);
  expect(await s.errors()).toBe('wren_cp_injector_version_errors_total{reason="unreachable"} 2');
  expect(s.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
    '--sidecar-mode auto: cannot read the Kubernetes version (GET /version: HTTP 503); injecting classic sidecars, which every version runs, until it can be read',
  ]);
  s.answer(async () => ({ major: '1', minor: '31', gitVersion: 'v1.31.0' }));
  await s.advance(60_000);
  expect(s.auto.nativeSidecars).toBe(true);
  // The API server goes away: new pods keep native sidecars (the cluster did not get older).
  s.answer(async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6443')));
  await s.advance(60_000);
  expect(s.auto.nativeSidecars).toBe(true);
  expect(s.lines.filter((l) => l.level === 'warn').map((l) => l.msg)[1]).toBe(
    '--sidecar-mode auto: cannot read the Kubernetes version (GET /version: connect ECONNREFUSED 127.0.0.1:6443); keeping the version last read (v1.31.0: native sidecars)',
  );
  // An answer without a version is a failure too.
  s.answer(async () => ({ gitVersion: 'weird' }));
  await s.advance(60_000);
  expect(await s.errors()).toBe('wren_cp_injector_version_errors_total{reason="unreachable"} 3\nwren_cp_injector_version_errors_total{reason="no-version"} 1');
  s.auto.stop();
});

test('a /version that never answers is given up after timeoutMs: classic, and the webhook can start', async () => {
  const s = setup();
  s.answer(() => new Promise(() => undefined));
  const started = s.auto.start();
  await s.advance(5000);
  await started;
  expect(s.auto.nativeSidecars).toBe(false);
  expect(await s.errors()).toBe('wren_cp_injector_version_errors_total{reason="unreachable"} 1');
  expect(s.lines[0].msg).toMatch(/GET \/version: no answer within 5000 ms/);
  s.auto.stop();
});

test('a read given up on (timeoutMs) is aborted, and stop() aborts the read in flight: no request is left open', async () => {
  const s = setup();
  s.answer(() => new Promise(() => undefined));
  const started = s.auto.start();
  expect(s.signals()[0].aborted).toBe(false);
  await s.advance(5000);
  await started;
  expect(s.signals()[0].aborted).toBe(true);
  await s.advance(60_000);
  expect(s.signals()).toHaveLength(2);
  expect(s.signals()[1].aborted).toBe(false);
  s.auto.stop();
  expect(s.signals()[1].aborted).toBe(true);
});
