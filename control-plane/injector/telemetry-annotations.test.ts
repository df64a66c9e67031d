import type { V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { injectPod } from './inject-pod.js';
import type { JsonPatchOp } from './json-patch.js';

const pod = (annotations: Record<string, string>): V1Pod => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'demo', annotations },
  spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'web:1' }] },
});
const envOf = (p: V1Pod, patch: JsonPatchOp[]) => {
  const patched = fjp.applyPatch(structuredClone(p), patch as fjp.Operation[], true, false).newDocument;
  const proxy = [...(patched.spec?.initContainers ?? []), ...(patched.spec?.containers ?? [])].find((c) => c.name === 'wren-proxy')!;
  return Object.fromEntries((proxy.env ?? []).filter((e) => /^WREN_(TRACING|ACCESS_LOG)/.test(e.name)).map((e) => [e.name, e.value]));
};

describe('telemetry annotations -> proxy environment', () => {
  test('valid values become WREN_TRACING_SAMPLING, WREN_ACCESS_LOG, WREN_ACCESS_LOG_SAMPLING', () => {
    const p = pod({ 'wren.io/tracing-sampling': '0.5', 'wren.io/access-log': 'true', 'wren.io/access-log-sampling': ' 100 ' });
    const r = injectPod(p);
    expect(r.warnings).toEqual([]);
    expect(envOf(p, r.patch)).toEqual({ WREN_TRACING_SAMPLING: '0.5', WREN_ACCESS_LOG: 'true', WREN_ACCESS_LOG_SAMPLING: '100' });
    const off = pod({ 'wren.io/access-log': 'false', 'wren.io/tracing-sampling': '0' });
    expect(envOf(off, injectPod(off).patch)).toEqual({ WREN_ACCESS_LOG: 'false', WREN_TRACING_SAMPLING: '0' });
  });

  test('none: no variables (the Telemetry resources and the defaults apply)', () => {
    const p = pod({});
    expect(envOf(p, injectPod(p).patch)).toEqual({});
  });

  test.each([
    ['wren.io/tracing-sampling', '101', 'expected a percentage from 0 to 100'],
    ['wren.io/tracing-sampling', '-1', 'expected a percentage from 0 to 100'],
    ['wren.io/tracing-sampling', '10%', 'expected a percentage from 0 to 100'],
    ['wren.io/access-log-sampling', 'all', 'expected a percentage from 0 to 100'],
    ['wren.io/access-log', 'yes', 'expected true or false'],
    ['wren.io/access-log', 'TRUE', 'expected true or false'],
  ])('%s: %s is ignored with a warning naming the annotation, and sets nothing', (key, value, why) => {
    const p = pod({ [key]: value });
    const r = injectPod(p);
    expect(r.injected).toBe(true);
    expect(r.warnings).toEqual([`${key}: ignoring ${JSON.stringify(value)} (${why}${why.startsWith('expected a') ? ', like "1" or "0.5")' : ')'}`]);
    expect(envOf(p, r.patch)).toEqual({});
  });
});
