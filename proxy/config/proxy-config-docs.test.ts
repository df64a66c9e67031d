import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { ConfigError } from '../../common/schema.js';
import { createRootCa } from '../../certs/index.js';
import { parseProxyConfig, PROXY_ENV } from './proxy-config.js';

/**
 * docs/configuration.md against the parser: its example is a config the proxy takes, and
 * every field the parser knows is documented somewhere under docs/ (a field nobody can
 * find is as good as missing; one the docs name and the parser refuses is a broken promise).
 */
const docsDir = fileURLToPath(new URL('../../docs/', import.meta.url));
/** The example's `caCertificates` is a placeholder; the parser reads the PEM, so a real one stands in. */
const PEM = createRootCa({ trustDomain: 'docs.example' }).certPem;

/** The first yaml block of docs/configuration.md, its PEM placeholder made a PEM; `tls` chosen over `identity.certify` (exactly one may be given). */
function documentedExample(): Record<string, unknown> & { identity: Record<string, unknown> } {
  const md = readFileSync(join(docsDir, 'configuration.md'), 'utf8');
  const block = /```yaml\n([\s\S]*?)```/.exec(md);
  if (!block) throw new Error('docs/configuration.md has no yaml block');
  const doc = parse(block[1].replace('"-----BEGIN CERTIFICATE-----..."', JSON.stringify(PEM))) as Record<string, unknown> & { identity: Record<string, unknown> };
  expect(doc.identity.certify).toBeDefined();
  delete doc.identity.certify;
  return doc;
}

type Path = readonly (string | number)[];

function objectPaths(node: unknown, path: Path, out: Path[]): Path[] {
  if (Array.isArray(node)) node.forEach((v, i) => objectPaths(v, [...path, i], out));
  else if (node !== null && typeof node === 'object') {
    out.push(path);
    for (const [k, v] of Object.entries(node)) objectPaths(v, [...path, k], out);
  }
  return out;
}

const at = (o: unknown, p: Path): Record<string, unknown> => p.reduce<unknown>((x, k) => (x as Record<string | number, unknown>)[k], o) as Record<string, unknown>;

/** The fields the parser knows at each object of the example: what it lists when that object gets a field it does not know. */
function knownFields(): Set<string> {
  const known = new Set<string>();
  for (const p of objectPaths(documentedExample(), [], [])) {
    const doc = documentedExample();
    at(doc, p)['wren-probe-field'] = 1;
    try {
      parseProxyConfig(doc);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const m = /unknown field \(expected one of ([^)]*)\)/.exec((e as Error).message);
      // Maps keyed by the user's words (labels, probe paths) take any key; their values' own checks answer.
      if (m) for (const k of m[1].split(', ')) known.add(k);
    }
  }
  return known;
}

test("docs/configuration.md's example is a config the proxy takes", () => {
  expect(() => parseProxyConfig(documentedExample())).not.toThrow();
  const withCertify = documentedExample();
  withCertify.identity.certify = {};
  expect(() => parseProxyConfig(withCertify)).toThrow(ConfigError);
});

test('every field the proxy config parser knows is documented under docs/', () => {
  const docs = readdirSync(docsDir)
    .filter((f) => f.endsWith('.md'))
    .map((f) => readFileSync(join(docsDir, f), 'utf8'))
    .join('\n');
  const known = knownFields();
  // The walk reaches the nested sections (routes, policies, egress), not just the top.
  for (const k of ['identity', 'listeners', 'outlierDetection', 'backends', 'externalServices', 'rateLimits']) expect(known).toContain(k);
  // Named as a YAML key (`name:`) or in backticks, as the docs write fields.
  const undocumented = [...known].filter((k) => !new RegExp(`(^|[\\s{,\`.])${k}(:|\`)`, 'm').test(docs));
  expect(undocumented).toEqual([]);
});

/**
 * The example's values are the defaults (what "default" means on that page), except the
 * illustrative ones listed here: a default changed in the parser and not on the page, or
 * the reverse, fails. The mesh, policy, upstreams, appProbes and ExternalServices are
 * examples of their own models, not defaults.
 */
test("docs/configuration.md's example values are the parser's defaults, bar the illustrative ones", () => {
  const doc = documentedExample();
  delete (doc.egress as Record<string, unknown>).externalServices;
  const example = parseProxyConfig(doc) as unknown as Record<string, unknown>;
  const defaults = parseProxyConfig({ tls: doc.tls }) as unknown as Record<string, unknown>;
  const examples = ['mesh', 'policy', 'upstreams', 'appProbes', 'egress.externalServices'];
  const differ: string[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map);
  const walk = (a: unknown, b: unknown, p: string): void => {
    if (examples.includes(p)) return;
    if (isObject(a) && isObject(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], p ? `${p}.${k}` : k);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) differ.push(p);
  };
  walk(example, defaults, '');
  expect(differ.sort()).toEqual([
    // Who the example workload is: no default names a workload.
    'discovery.controlPlane', 'identity.labels.app', 'identity.pod', 'identity.serviceAccount',
    'identity.workload.app', 'identity.workload.name', 'identity.workload.version',
    // Optional: unset leaves them to the control plane (egress mode, telemetry) or off (the collector);
    // the example shows the effective defaults its comments name, or a value.
    'egress.mode', 'telemetry.accessLog.enabled', 'telemetry.accessLog.samplingPercent', 'telemetry.tracing.samplingPercent', 'tracing.collector',
  ].sort());
});

test("docs/configuration.md's in-cluster section names exactly the environment variables the proxy reads (PROXY_ENV)", () => {
  const md = readFileSync(join(docsDir, 'configuration.md'), 'utf8');
  const section = md.slice(md.indexOf('## In-cluster mode (environment)'));
  const named = new Set([...section.matchAll(/`((?:WREN|POD)_[A-Z0-9_]+)`/g)].map((m) => m[1]));
  expect([...named].sort()).toEqual(PROXY_ENV.map((v) => v.name).sort());
});
