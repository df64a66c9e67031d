import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseAllDocuments } from 'yaml';
import { injectCommand } from './inject.js';
import { CertificateAuthority, createRootCa, issueWorkload } from '../certs/index.js';
import { proxyConfigFromEnv } from '../proxy/config/proxy-config.js';

/** A real root (what --trust-bundle should be given) and a workload leaf under it (what it should not). */
const root = createRootCa({ trustDomain: 'example.org' });
const leaf = issueWorkload(new CertificateAuthority({ certPem: root.certPem, keyPem: root.keyPem, trustDomain: 'example.org' }), 'spiffe://example.org/ns/default/sa/web');

async function run(argv: string[], stdin = '') {
  let out = '';
  let err = '';
  const code = await injectCommand(argv, (s) => (out += s), (s) => (err += s), Readable.from([stdin]));
  return { code, out, err };
}

const DEPLOY = `# the web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels: { app: web }
    spec:
      containers:
        - name: app
          image: web:1
---
# untouched: a Service keeps its comment
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{ port: 80 }]
`;

test('--help', async () => {
  const r = await run(['--help']);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^Usage: wren inject/);
});

test('reads stdin when FILE is -, injects workloads, passes other kinds through', async () => {
  const r = await run(['-'], DEPLOY);
  expect(r.code).toBe(0);
  const docs = parseAllDocuments(r.out).map((d) => d.toJS());
  expect(docs).toHaveLength(2);
  expect(docs[0].spec.template.spec.initContainers.map((c: { name: string }) => c.name)).toEqual(['wren-init', 'wren-proxy']);
  expect(docs[1]).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } });
  expect(r.out).toContain('# untouched: a Service keeps its comment');
  expect(r.out).toContain('# the web tier');
  expect(r.err).toContain('Deployment/web: injected');
  expect(r.err).toContain('1 pod template(s) injected');
});

test('injecting the output again changes nothing', async () => {
  const once = await run(['-'], DEPLOY);
  const twice = await run(['-'], once.out);
  expect(twice.code).toBe(0);
  expect(parseAllDocuments(twice.out).map((d) => d.toJS())).toEqual(parseAllDocuments(once.out).map((d) => d.toJS()));
  expect(twice.err).toContain('Deployment/web: skipped (already injected)');
});

test('flags: --classic, --image, --trust-domain, --trust-bundle', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wren-inject-'));
  try {
    writeFileSync(join(dir, 'pod.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec: { containers: [{ name: app, image: a }] }\n');
    writeFileSync(join(dir, 'ca.crt'), root.certPem);
    const r = await run([join(dir, 'pod.yaml'), '--classic', '--image', 'reg/wren:dev', '--trust-domain', 'example.org', '--trust-bundle', join(dir, 'ca.crt')]);
    expect(r.code).toBe(0);
    const pod = parseAllDocuments(r.out)[0].toJS();
    expect(pod.spec.containers.map((c: { name: string }) => c.name)).toEqual(['wren-proxy', 'app']);
    const proxy = pod.spec.containers[0];
    expect(proxy.image).toBe('reg/wren:dev');
    const env = Object.fromEntries(proxy.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(env.WREN_TRUST_DOMAIN).toBe('example.org');
    expect(env.WREN_TRUST_BUNDLE).toContain('BEGIN CERTIFICATE');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--trust-domain, --control-plane and --trust-bundle are checked with the proxy\'s rules: a value the proxy would refuse at start is a usage error (2) naming the flag', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wren-inject-'));
  try {
    writeFileSync(join(dir, 'ca.crt'), root.certPem);
    writeFileSync(join(dir, 'leaf.crt'), leaf.certPem);
    writeFileSync(join(dir, 'junk.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'key.pem'), leaf.keyPem);
    const bundle = ['--trust-bundle', join(dir, 'ca.crt')];
    const refused = async (args: string[], message: RegExp) => {
      const r = await run(['-', ...args], DEPLOY);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(message);
    };
    await refused(['--trust-domain', 'Not A Domain', ...bundle], /^wren inject: --trust-domain: expected a trust domain .*, got "Not A Domain"/);
    await refused(['--trust-domain', '', ...bundle], /^wren inject: --trust-domain: /);
    await refused(['--control-plane', 'no-port-here', ...bundle], /^wren inject: --control-plane: expected HOST:PORT .*, got "no-port-here"/);
    await refused(['--control-plane', 'cp.mesh:x', ...bundle], /^wren inject: --control-plane: /);
    await refused(['--trust-bundle', join(dir, 'key.pem')], /^wren inject: --trust-bundle: .*key\.pem holds no PEM certificate/);
    await refused(['--trust-bundle', join(dir, 'junk.crt')], /^wren inject: --trust-bundle: .*junk\.crt certificate 1 of 1 is not a valid X\.509 certificate/);
    await refused(['--trust-bundle', join(dir, 'leaf.crt')], /^wren inject: --trust-bundle: .*leaf\.crt certificate 1 of 1 \(.*\) is not a CA certificate/);
    // What it accepts, the proxy accepts: the injected env parses with the proxy's own parser.
    const ok = await run(['-', '--trust-domain', 'example.org', '--control-plane', 'cp.mesh.svc:15010', ...bundle], DEPLOY);
    expect(ok.code).toBe(0);
    expect(ok.err).not.toContain('no --trust-bundle');
    const proxy = parseAllDocuments(ok.out)[0].toJS().spec.template.spec.initContainers[1];
    const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'default', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
    const env = Object.fromEntries(proxy.env.map((e: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }) => [e.name, e.value ?? downward[e.valueFrom!.fieldRef.fieldPath]]));
    const config = proxyConfigFromEnv(env);
    expect(config.identity.trustDomain).toBe('example.org');
    expect(config.discovery.controlPlane).toBe('cp.mesh.svc:15010');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without --trust-bundle the output is written, with a warning that the proxies will not start until WREN_TRUST_BUNDLE is set', async () => {
  const r = await run(['-'], DEPLOY);
  expect(r.code).toBe(0);
  expect(r.err).toContain('wren inject: no --trust-bundle: WREN_TRUST_BUNDLE is empty');
});

test('errors: missing file (1), invalid YAML (1), bad flag (2)', async () => {
  expect((await run(['/nonexistent/x.yaml'])).code).toBe(1);
  const bad = await run(['-'], 'a: [1, 2\n');
  expect(bad.code).toBe(1);
  expect(bad.err).toMatch(/wren inject: -:/);
  expect((await run(['--log-level', 'loud'])).code).toBe(2);
});

test('an annotation that is no string (an unquoted YAML number) is an error naming the field, not a stack trace', async () => {
  const yaml = DEPLOY.replace('      labels: { app: web }', "      labels: { app: web }\n      annotations: { 'wren.io/skip-inbound-ports': 8080, 'wren.io/proxy-concurrency': 2 }");
  const r = await run(['-'], yaml);
  expect(r.code).toBe(1);
  expect(r.err).toBe('wren inject: -: Deployment/web: spec.template.metadata.annotations["wren.io/skip-inbound-ports"]: expected a string, got number 8080 (quote it in YAML)\n');
  expect(r.out).toBe('');
});
