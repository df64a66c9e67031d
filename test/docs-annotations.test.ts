import { readFileSync } from 'node:fs';
import { A } from '../control-plane/injector/annotations.js';
import { DEFAULT_INJECT_OPTIONS } from '../control-plane/injector/options.js';
import { MESH_PROXY_PORT_ANNOTATION } from '../control-plane/translate/k8s-objects.js';

/**
 * docs/kubernetes.md's Annotations table against the code: a row for every annotation the
 * injector or the control plane reads on a pod, and the injector's defaults where the
 * table gives one. wren.io/proxy-port, read by the control plane (and now the injector),
 * had no row (adv64).
 */
const md = readFileSync(new URL('../docs/kubernetes.md', import.meta.url), 'utf8');
const rows = new Map([...md.matchAll(/^\| `(wren\.io\/[a-z0-9-]+)` \| ([^|]*) \|/gm)].map((m) => [m[1], m[2].trim()]));

/** Set by the webhook on the pods it injects, not read as settings: described in the prose. */
const WRITTEN_BY_THE_INJECTOR = new Set<string>([A.injected, A.injectWarnings]);

test.each([...Object.values(A), MESH_PROXY_PORT_ANNOTATION].filter((k) => !WRITTEN_BY_THE_INJECTOR.has(k)))('%s has a row in the Annotations table', (key) => {
  expect(rows.has(key)).toBe(true);
});

test('the rows give the injector\'s defaults', () => {
  const r = DEFAULT_INJECT_OPTIONS.resources;
  const shown = (v: string) => (v === '' ? 'none' : `\`${v}\``);
  expect({
    cpuRequest: rows.get(A.cpuRequest), memoryRequest: rows.get(A.memoryRequest), cpuLimit: rows.get(A.cpuLimit), memoryLimit: rows.get(A.memoryLimit),
    logLevel: rows.get(A.logLevel), proxyPort: rows.get(MESH_PROXY_PORT_ANNOTATION),
  }).toEqual({
    cpuRequest: shown(r.cpuRequest), memoryRequest: shown(r.memoryRequest), cpuLimit: shown(r.cpuLimit), memoryLimit: shown(r.memoryLimit),
    logLevel: `\`${DEFAULT_INJECT_OPTIONS.logLevel}\``, proxyPort: `\`${DEFAULT_INJECT_OPTIONS.inboundPort}\``,
  });
});
