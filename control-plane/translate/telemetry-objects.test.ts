import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../../common/schema.js';
import { validateResource } from '../../manifests/validate.js';
import { parseTelemetryResource, resolveWorkloadTelemetry, type KTelemetry } from './telemetry-objects.js';

let clock = 0;
const raw = (ns: string, name: string, spec: unknown, createdAt?: string) => ({
  apiVersion: 'policy.wren.io/v1alpha1', kind: 'Telemetry',
  metadata: { name, namespace: ns, creationTimestamp: createdAt ?? new Date(1e12 + ++clock * 1000).toISOString() }, spec,
});
const tel = (ns: string, name: string, spec: unknown, createdAt?: string): KTelemetry => parseTelemetryResource(raw(ns, name, spec, createdAt), '');
const web: { namespace: string; labels: Record<string, string> } = { namespace: 'shop', labels: { app: 'web', version: 'v1' } };
const resolved = (all: KTelemetry[], w = web) => resolveWorkloadTelemetry(all, w, 'wren-system').telemetry;
const NONE = { tracing: { samplingPercent: undefined }, accessLog: { enabled: undefined, samplingPercent: undefined } };

describe('parseTelemetryResource', () => {
  test('Istio fields, and the log sampling extension', () => {
    const t = tel('shop', 'web', { selector: { matchLabels: { app: 'web' } }, tracing: [{ randomSamplingPercentage: 12.5 }], accessLogging: [{ randomSamplingPercentage: 10 }] });
    expect(t).toMatchObject({ name: 'shop/web', namespace: 'shop', selector: { app: 'web' }, samplingPercent: 12.5, accessLogEnabled: true, accessLogSamplingPercent: 10 });
  });

  test('an accessLogging entry turns logs on unless disabled; no entry leaves them unset', () => {
    expect(tel('shop', 'a', { accessLogging: [{}] }).accessLogEnabled).toBe(true);
    expect(tel('shop', 'b', { accessLogging: [{ disabled: true }] }).accessLogEnabled).toBe(false);
    expect(tel('shop', 'c', { accessLogging: [{ disabled: false }] }).accessLogEnabled).toBe(true);
    expect(tel('shop', 'd', { tracing: [{}] })).toMatchObject({ samplingPercent: undefined, accessLogEnabled: undefined, accessLogSamplingPercent: undefined });
    expect(tel('shop', 'e', undefined)).toMatchObject({ selector: null, samplingPercent: undefined, accessLogEnabled: undefined });
  });

  test.each([
    [{ tracing: [{ randomSamplingPercentage: 101 }] }, 'spec.tracing[0].randomSamplingPercentage'],
    [{ tracing: [{ randomSamplingPercentage: -1 }] }, 'spec.tracing[0].randomSamplingPercentage'],
    [{ tracing: [{ randomSamplingPercentage: '10' }] }, 'spec.tracing[0].randomSamplingPercentage'],
    [{ tracing: [{}, {}] }, 'spec.tracing'],
    [{ accessLogging: [{}, { disabled: true }] }, 'spec.accessLogging'],
    [{ tracing: [{ disableSpanReporting: true }] }, 'spec.tracing[0].disableSpanReporting'],
    [{ accessLogging: [{ disabled: 'yes' }] }, 'spec.accessLogging[0].disabled'],
    [{ accessLogging: [{ providers: [{ name: 'envoy' }] }] }, 'spec.accessLogging[0].providers'],
    [{ accessLogging: [{ randomSamplingPercentage: 200 }] }, 'spec.accessLogging[0].randomSamplingPercentage'],
    [{ metrics: [] }, 'spec.metrics'],
    [{ selector: { matchLabels: { app: 1 } } }, 'spec.selector.matchLabels.app'],
  ])('%j is rejected at %s, as the CRD does', (spec, path) => {
    let err: unknown;
    try {
      parseTelemetryResource(raw('shop', 'bad', spec), '');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
    const crd = validateResource(raw('shop', 'bad', spec));
    expect(crd.ok).toBe(false);
    if (!crd.ok) expect(crd.errors.map((e) => e.path)).toContain(path);
  });

  test('what the parser accepts the CRD accepts', () => {
    for (const spec of [{}, { tracing: [{ randomSamplingPercentage: 0 }] }, { tracing: [{ randomSamplingPercentage: 100 }], accessLogging: [{ disabled: true, randomSamplingPercentage: 0.5 }] }]) {
      expect(() => parseTelemetryResource(raw('shop', 'ok', spec), '')).not.toThrow();
      expect(validateResource(raw('shop', 'ok', spec))).toEqual({ ok: true });
    }
  });
});

describe('resolveWorkloadTelemetry', () => {
  const mesh = (spec: unknown) => tel('wren-system', 'mesh', spec);
  const ns = (spec: unknown, namespace = 'shop') => tel(namespace, 'ns', spec);
  const wl = (spec: object, labels: Record<string, string> = { app: 'web' }, namespace = 'shop') => tel(namespace, `wl-${++clock}`, { ...spec, selector: { matchLabels: labels } });

  test('nothing: no overrides (the proxy uses its defaults)', () => {
    expect(resolved([])).toEqual(NONE);
  });

  test('workload over namespace over mesh-wide, field by field', () => {
    const all = [
      mesh({ tracing: [{ randomSamplingPercentage: 5 }], accessLogging: [{ randomSamplingPercentage: 50 }] }),
      ns({ accessLogging: [{ disabled: true }] }),
      wl({ tracing: [{ randomSamplingPercentage: 100 }] }),
    ];
    // tracing from the workload, logs off from the namespace, log sampling from the mesh.
    expect(resolved(all)).toEqual({ tracing: { samplingPercent: 100 }, accessLog: { enabled: false, samplingPercent: 50 } });
    // another workload of the namespace: no workload level.
    expect(resolved(all, { namespace: 'shop', labels: { app: 'db' } })).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: false, samplingPercent: 50 } });
    // another namespace: only the mesh-wide one.
    expect(resolved(all, { namespace: 'other', labels: { app: 'web' } })).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: true, samplingPercent: 50 } });
  });

  test('scope: a selector picks workloads of its own namespace only; a namespace resource is not mesh-wide', () => {
    expect(resolved([wl({ tracing: [{ randomSamplingPercentage: 9 }] }, { app: 'web' }, 'other')])).toEqual(NONE);
    expect(resolved([ns({ tracing: [{ randomSamplingPercentage: 9 }] }, 'other')])).toEqual(NONE);
    expect(resolved([wl({ tracing: [{ randomSamplingPercentage: 9 }] }, { app: 'web', version: 'v2' })])).toEqual(NONE);
    expect(resolved([wl({ tracing: [{ randomSamplingPercentage: 9 }] }, { app: 'web', version: 'v1' })]).tracing.samplingPercent).toBe(9);
    // A selector in the root namespace selects that namespace's workloads; it is not mesh-wide.
    expect(resolved([wl({ tracing: [{ randomSamplingPercentage: 9 }] }, { app: 'web' }, 'wren-system')])).toEqual(NONE);
    expect(resolved([wl({ tracing: [{ randomSamplingPercentage: 9 }] }, { app: 'web' }, 'wren-system')], { namespace: 'wren-system', labels: { app: 'web' } }).tracing.samplingPercent).toBe(9);
  });

  test('two at one level (Istio allows one): the oldest applies, the other is ignored and reported', () => {
    const older = tel('shop', 'zz-older', { tracing: [{ randomSamplingPercentage: 10 }] }, '2026-01-01T00:00:00Z');
    const newer = tel('shop', 'aa-newer', { tracing: [{ randomSamplingPercentage: 90 }], accessLogging: [{}] }, '2026-02-01T00:00:00Z');
    for (const order of [[older, newer], [newer, older]]) {
      const r = resolveWorkloadTelemetry(order, web, 'wren-system');
      // Not merged: the newer one's access-log entry is ignored too.
      expect(r.telemetry).toEqual({ tracing: { samplingPercent: 10 }, accessLog: { enabled: undefined, samplingPercent: undefined } });
      expect(r.conflicts).toEqual(['namespace shop: Telemetry shop/zz-older applies (the oldest); shop/aa-newer ignored (only one Telemetry may apply per level)']);
    }
    const w1 = tel('shop', 'w1', { selector: { matchLabels: { app: 'web' } }, tracing: [{ randomSamplingPercentage: 1 }] }, '2026-01-01T00:00:00Z');
    const w2 = tel('shop', 'w2', { selector: { matchLabels: { version: 'v1' } }, tracing: [{ randomSamplingPercentage: 2 }] }, '2026-01-01T00:00:00Z');
    const r = resolveWorkloadTelemetry([w2, w1], web, 'wren-system');
    expect(r.telemetry.tracing.samplingPercent).toBe(1); // same age: by name
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]).toMatch(/^workload shop .*shop\/w1 applies.*shop\/w2 ignored/);
  });

  test('0 and disabled are values, not unset', () => {
    const r = resolved([mesh({ tracing: [{ randomSamplingPercentage: 50 }], accessLogging: [{}] }), ns({ tracing: [{ randomSamplingPercentage: 0 }], accessLogging: [{ disabled: true }] })]);
    expect(r).toEqual({ tracing: { samplingPercent: 0 }, accessLog: { enabled: false, samplingPercent: undefined } });
  });
});

test('manifests/examples/telemetry.yaml resolves as its comments say', () => {
  const text = readFileSync(new URL('../../manifests/examples/telemetry.yaml', import.meta.url), 'utf8');
  const all = parseAllDocuments(text).map((d, i) => parseTelemetryResource(d.toJS(), `[${i}]`));
  expect(resolved(all, { namespace: 'demo', labels: { app: 'checkout' } })).toEqual({ tracing: { samplingPercent: 100 }, accessLog: { enabled: true, samplingPercent: 100 } });
  expect(resolved(all, { namespace: 'demo', labels: { app: 'cart' } })).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: true, samplingPercent: 10 } });
  expect(resolved(all, { namespace: 'shop', labels: { app: 'checkout' } })).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: undefined, samplingPercent: undefined } });
});
