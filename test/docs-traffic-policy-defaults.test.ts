import { readFileSync } from 'node:fs';
import { DEFAULT_POLICY } from '../contract/defaults.js';
import { parseTrafficPolicy } from '../contract/parse.js';

/**
 * docs/resilience.md against contract/defaults.ts: every TrafficPolicy field has a row in
 * a `| Field | Default | ... |` table of its section, and the default the row gives is the
 * parser's. docs/configuration.md's example is checked against the proxy config's defaults
 * (proxy/config/proxy-config-docs.test.ts), but a service's `policy` there is an example,
 * not defaults: nothing compared this page with the code, and the `timeouts` fields, the
 * load balancer's and `retryOn` had no documented default at all (adv64).
 */
const md = readFileSync(new URL('../docs/resilience.md', import.meta.url), 'utf8');

/** The sections of the page each part of a TrafficPolicy is documented in (circuitBreaker: the breakers and the limits). */
const SECTIONS: Record<string, RegExp> = {
  loadBalancer: /^## Load balancing/,
  outlierDetection: /^## Outlier detection/,
  circuitBreaker: /^## (Failure-accrual breakers|Concurrency limits)/,
  retry: /^## Retries/,
  timeouts: /^## Timeouts/,
  healthCheck: /^## Active health checks/,
};

/** Table rows by the `## ` section they are in: field name -> the default's text. */
function documented(): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let section = '';
  for (const line of md.split('\n')) {
    if (line.startsWith('## ')) section = line;
    const row = /^\| ([^|]*) \| ([^|]*) \|/.exec(line);
    if (!row) continue;
    const names = [...row[1].matchAll(/`([A-Za-z0-9.]+)`/g)].map((m) => m[1]);
    const values = row[2].split(' / ');
    if (names.length === 0 || (values.length !== names.length && values.length !== 1)) continue;
    const at = out.get(section) ?? new Map<string, string>();
    names.forEach((n, i) => at.set(n, (values[i] ?? values[0]).trim()));
    out.set(section, at);
  }
  return out;
}

/** A documented default as a value: `10 s` 10000, `64 KiB` 65536, `10 %` 10, `0 (off)` 0, `` `off` `` 'off', `[]`, `''`. */
function valueOf(text: string): unknown {
  const t = text.replace(/`/g, '').replace(/\s*\(.*\)$/, '').trim();
  if (t === 'true' || t === 'false') return t === 'true';
  if (t === '[]') return [];
  if (t === "''") return '';
  const n = /^(\d+(?:\.\d+)?) ?(ms|s|min|KiB|%)?$/.exec(t.replace(/,/g, ''));
  if (n) return Number(n[1]) * ({ ms: 1, s: 1000, min: 60_000, KiB: 1024, '%': 1 } as Record<string, number>)[n[2] ?? '%'];
  return t;
}

const healthCheckDefaults = (() => {
  const { kind: _kind, ...rest } = parseTrafficPolicy({ healthCheck: { kind: 'http' } }, 'policy').healthCheck!;
  return rest;
})();

const fields: [string, string, unknown][] = [];
for (const [section, v] of Object.entries({ ...DEFAULT_POLICY, healthCheck: healthCheckDefaults }))
  if (v !== null && typeof v === 'object') for (const [k, d] of Object.entries(v)) fields.push([section, k, d]);

test('the walk covers every part of a TrafficPolicy that has defaults', () => {
  expect(new Set(fields.map(([s]) => s))).toEqual(new Set(Object.keys(SECTIONS)));
});

test.each(fields)('docs/resilience.md documents %s.%s with its default (%j)', (section, field, value) => {
  const docs = documented();
  const rows = [...docs].filter(([heading]) => SECTIONS[section].test(heading)).map(([, m]) => m);
  const text = rows.map((m) => m.get(field) ?? m.get(`${section}.${field}`)).find((t) => t !== undefined);
  expect({ field: `${section}.${field}`, documented: text === undefined ? 'no row' : valueOf(text) }).toEqual({ field: `${section}.${field}`, documented: value });
});
