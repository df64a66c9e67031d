import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest, Agent } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import type { Proxy } from '../proxy/proxy.js';
import { fakeApp, fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import { interpolate, loadDashboards, metricNames, type Dashboard, type QueryVariable } from './helpers/grafana-dashboards.js';
import { testPki } from './helpers/pki.js';
import { Prometheus, prometheusSkipReason, type QueryResult } from './helpers/prometheus.js';
import { meshService, startProxy } from './helpers/proxy.js';

/**
 * The shipped Grafana dashboards against a real Prometheus (Debian's `prometheus`). Two
 * sidecars (workloads frontend -> web-v1) carry HTTP/1.1 (200, 404, 503), gRPC (OK and
 * NOT_FOUND), calls the client sidecar fails itself (a request timeout; a refused connect)
 * and opaque TCP; a control plane serves a subscribed third sidecar (a snapshot, then a
 * change), one Certify and one refused. Prometheus scrapes both sidecars' and the control
 * plane's /metrics every second, with the target labels Kubernetes service discovery gives
 * (namespace, pod). Then EVERY expression of EVERY dashboard, for every value its template
 * variables offer (found by running the variables' own queries), goes through
 * /api/v1/query and must parse; it must return data (a non-NaN sample for some variable
 * value) when every metric it reads exists in Prometheus, i.e. when the traffic produced
 * them; and every metric it reads must be one Wren exports. Failures name dashboard and panel.
 */
const SKIP = prometheusSkipReason('test/dashboards-prometheus.test.ts');
const suite = SKIP ? describe.skip : describe;

const pki = testPki();
const agent = new Agent({ keepAlive: true });
let web: FakeApp, tcp: FakeApp, backend: FakeGrpc;
let client: Proxy, server: Proxy, watcher: Proxy | undefined;
let cp: ControlPlane, meshDir: string, prom: Prometheus | undefined;
let echo: EchoClient;
let nextDst: { address: string; port: number } | undefined;

const TCP_IP = '10.96.0.10';
const BOOT_TOKEN = 'bootstrap-token-for-dashboards-01';
/** The two workloads, as the injector would name them (WREN_WORKLOAD_*). */
const WEB = { name: 'web-v1', app: 'web', version: 'v1' };
const FRONTEND = { name: 'frontend', app: 'frontend', version: 'v2' };

function get(path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const unary = (failCode?: number) =>
  new Promise<number>((resolve) => echo.Unary({ message: 'dash', ...(failCode ? { failCode } : {}) }, (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)));

/** An opaque TCP connection to TCP_IP:6379 through the client sidecar (original destination injected). */
function tcpExchange(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    nextDst = { address: TCP_IP, port: 6379 };
    const s: Socket = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got === 'hello\n') s.write(text);
      if (got.endsWith(text)) s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

async function traffic(): Promise<void> {
  for (let i = 0; i < 10; i++) expect(await get('/name', 'web')).toBe(200);
  for (const code of [404, 503]) for (let i = 0; i < 3; i++) expect(await get(`/status/${code}`, 'web')).toBe(code);
  expect(await get('/slow?ms=4000', 'web')).toBe(504);
  for (let i = 0; i < 2; i++) expect(await get('/name', 'gone')).toBeGreaterThanOrEqual(500); // nothing listens: the client sidecar answers
  for (let i = 0; i < 5; i++) expect(await unary()).toBe(grpc.status.OK);
  for (let i = 0; i < 2; i++) expect(await unary(grpc.status.NOT_FOUND)).toBe(grpc.status.NOT_FOUND);
  // The three connections side by side: the app speaks first, so each waits out the
  // sidecars' protocol detection (detectTimeoutMs, 1 s; docs/security.md) before its greeting
  // comes; one after the other they were 3 s of each traffic().
  const pings = [0, 1, 2].map((i) => `ping ${i}\n`);
  expect(await Promise.all(pings.map((p) => tcpExchange(p)))).toEqual(pings.map((p) => `hello\n${p}`));
}

/** The proxy config's identity section, with the workload the injector would set (WREN_WORKLOAD_*). */
const identity = (serviceAccount: string, workload: { name: string; app: string; version: string }) => ({ namespace: 'default', serviceAccount, trustDomain: pki.trustDomain, workload });

/** A pod name the way a Deployment names them: <workload>-<replicaset hash>-<suffix>. */
const podOf = (workload: string) => `${workload}-6d8f7c9b5-q2x7z`;

beforeAll(async () => {
  if (SKIP) return;
  web = await fakeApp('web');
  tcp = await fakeTcpApp('hello\n');
  backend = await fakeGrpc();
  server = await startProxy({ pki, serviceAccount: 'web', config: { identity: identity('web', WEB) } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { identity: identity('client', FRONTEND) },
    services: [
      // A 2 s request timeout: /slow?ms=4000 makes the client sidecar answer 504 (UT) for a service the server also reports.
      // (500 ms was reached by a plain /name once, on a fresh machine loaded with other suites.)
      meshService('web', 80, [{ appPort: web.port, proxy: server }], { policy: { timeouts: { requestMs: 2000 } } }),
      meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' }),
      meshService('redis', 6379, [{ appPort: tcp.port, proxy: server }], { clusterIPs: [TCP_IP], protocol: 'opaque' }),
      // No sidecar, nothing listening: the client sidecar's connect fails (a response flag, UF or URX).
      meshService('gone', 80, [{ appPort: 1, proxy: null }], { protocol: 'http1' }),
    ],
    originalDst: () => nextDst,
  });
  echo = echoClient(client.outboundPort, 'echo:50051');

  meshDir = await mkdtemp(join(tmpdir(), 'wren-dash-mesh-'));
  await writeFile(join(meshDir, 'web.yaml'), 'kind: MeshService\nmetadata: { name: web, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 80, protocol: http1 }\n  endpoints:\n    - { address: 127.0.0.1, port: 8080 }\n');
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(13), logger: silentLogger,
    processMetrics: true,
    identity: { issuer: generateIssuer(pki.trustDomain), authenticator: new BootstrapTokenAuthenticator([{ token: BOOT_TOKEN, namespace: 'default', serviceAccount: 'watcher' }]) },
    source: (ctx) => new DirSource({ ...ctx, dir: meshDir, displayDir: 'mesh' }),
  });
  await cp.whenReady();

  // The traffic once before Prometheus starts, so every series exists at its first scrape, and again after it.
  await traffic();
  prom = await Prometheus.start([
    // The sidecars as Prometheus scrapes them in a cluster: the metrics port (Istio's 15020) at the
    // injector's prometheus.io/path, not the admin port (loopback-only in a pod).
    { job: 'wren-proxy', address: `127.0.0.1:${client.metricsPort}`, path: '/stats/prometheus', labels: { namespace: 'default', pod: podOf(FRONTEND.name) } },
    { job: 'wren-proxy', address: `127.0.0.1:${server.metricsPort}`, path: '/stats/prometheus', labels: { namespace: 'default', pod: podOf(WEB.name) } },
    { job: 'wren-control-plane', address: `127.0.0.1:${cp.adminPort}`, labels: { namespace: 'wren-system', pod: podOf('wren-control-plane') } },
  ]);
  await prom.waitForScrapes(1);
  await traffic();
  // The control plane: a proxy subscribes (a full push), the mesh changes (a delta, ACKed: push latency), one Certify.
  watcher = await startProxy({ pki, serviceAccount: 'watcher', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 50, maxMs: 500 } });
  await waitUntil(() => watcher!.snapshot.services.length > 0, 'the watcher sidecar gets its first snapshot');
  await writeFile(join(meshDir, 'web.yaml'), 'kind: MeshService\nmetadata: { name: web, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 80, protocol: http1 }\n  endpoints:\n    - { address: 127.0.0.1, port: 8081 }\n');
  await waitUntil(() => watcher!.snapshot.services.some((s) => s.ports[0]?.endpoints[0]?.port === 8081), 'the watcher sidecar gets the change');
  const certify = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const id = `spiffe://${pki.trustDomain}/ns/default/sa/watcher`;
  const { privateKeyPem } = generateKeyPair();
  await certify.certify({ identity: id, token: Buffer.from(BOOT_TOKEN), csrPem: createCsr(privateKeyPem, id), requestedLifetimeMs: 0 }, 5000);
  // And one refused (an unknown token): wren_identity_certificates_refused_total{reason="unauthenticated"}.
  await expect(certify.certify({ identity: id, token: Buffer.from(`${BOOT_TOKEN}x`), csrPem: createCsr(privateKeyPem, id), requestedLifetimeMs: 0 }, 5000)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  certify.close();
  await prom.waitForScrapes(2);
}, 90_000);

afterAll(async () => {
  if (SKIP) return;
  agent.destroy();
  echo?.close();
  await prom?.close();
  await watcher?.close();
  await client?.close();
  await server?.close();
  await cp?.close(1000);
  await web?.close();
  await tcp?.close();
  await backend?.close();
  if (meshDir) await rm(meshDir, { recursive: true, force: true });
});

async function waitUntil(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The metric names Wren exports: the `# TYPE` lines the scraped targets serve (every
 * registered metric, sampled or not; prom-client's prefixed process metrics of the control
 * plane included) and the metric names written in the proxy's and control plane's source
 * (metrics registered only when a feature is on, such as the workload certificate's).
 */
async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const port of [client.adminPort, server.adminPort, cp.adminPort]) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.add(name);
      if (type === 'histogram') for (const x of ['_bucket', '_sum', '_count']) names.add(name + x);
    }
  }
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []));
  for (const f of ['proxy', 'control-plane'].flatMap((d) => walk(join(import.meta.dirname, '..', d))))
    for (const [, name] of readFileSync(f, 'utf8').matchAll(/'((?:istio|wren|process|nodejs)_[a-z0-9_]+)'/g)) for (const x of ['', '_bucket', '_sum', '_count']) names.add(name + x);
  return names;
}

const hasData = (r: QueryResult) => r.ok && r.samples.some((s) => !Number.isNaN(Number(s.value[1])));

/** Grafana's query_result() text of a sample: `name{a="b", c="d"} value timestamp`. */
const sampleText = (m: Readonly<Record<string, string>>, v: readonly [number, string]) =>
  `${m['__name__'] ?? ''}{${Object.entries(m).filter(([k]) => k !== '__name__').map(([k, x]) => `${k}="${x}"`).join(', ')}} ${v[1]} ${v[0] * 1000}`;

/** The values a template variable offers (Grafana's Prometheus variable queries), or an error. */
async function variableValues(v: QueryVariable, values: Record<string, string>): Promise<{ values: string[] } | { error: string }> {
  const q = interpolate(v.query, values).trim();
  let raw: string[];
  const lv = /^label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)$/s.exec(q);
  const qr = /^query_result\((.*)\)$/s.exec(q);
  if (lv) {
    const r = await prom!.labelValues(lv[2], lv[1]);
    if (!r.ok) return { error: r.error };
    raw = r.values;
  } else if (qr) {
    const r = await prom!.query(qr[1]);
    if (!r.ok) return { error: r.error };
    raw = r.samples.map((s) => sampleText(s.metric, s.value));
  } else return { error: `not a Grafana Prometheus variable query: ${q}` };
  if (!v.regex) return { values: raw };
  const re = new RegExp(/^\/(.*)\/$/s.exec(v.regex)?.[1] ?? v.regex);
  return { values: [...new Set(raw.map((x) => re.exec(x)?.[1]).filter((x): x is string => x !== undefined))] };
}

/** Every assignment of the dashboard's variables, each offering the values its query returns given the earlier ones. */
async function assignments(d: Dashboard, failures: string[]): Promise<Record<string, string>[]> {
  let out: Record<string, string>[] = [{}];
  for (const v of d.variables) {
    const next: Record<string, string>[] = [];
    for (const a of out) {
      const r = await variableValues(v, a);
      if ('error' in r) failures.push(`${d.title}: variable $${v.name} (${JSON.stringify(a)}): ${r.error}`);
      else if (r.values.length === 0) failures.push(`${d.title}: variable $${v.name} offers no value for ${JSON.stringify(a)}`);
      else for (const x of r.values) next.push({ ...a, [v.name]: x });
    }
    out = next;
  }
  return out;
}

suite(SKIP ? `dashboards against a real Prometheus (skipped: ${SKIP})` : 'dashboards against a real Prometheus', () => {
  const dashboards = SKIP ? [] : loadDashboards();

  test('the traffic produced the metrics the panels read (the test is not vacuous)', async () => {
    const names = await prom!.labelValues('__name__');
    expect(names.ok).toBe(true);
    const present = new Set(names.ok ? names.values : []);
    for (const m of [
      'istio_requests_total', 'istio_request_duration_milliseconds_bucket', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total',
      'istio_tcp_connections_opened_total', 'wren_proxy_errors_total', 'process_cpu_seconds_total',
      'wren_cp_subscribers', 'wren_cp_pushes_total', 'wren_cp_push_latency_seconds_bucket', 'wren_identity_certificates_issued_total', 'wren_cp_process_cpu_seconds_total',
    ])
      expect(`${m}: ${present.has(m)}`).toBe(`${m}: true`);
    expect(dashboards.map((d) => d.file)).toEqual(['control-plane.json', 'mesh.json', 'service.json', 'workload.json']);
  });

  test('every metric a dashboard reads is one Wren exports (a misspelt name would otherwise pass as "not produced")', async () => {
    const exported = await exportedMetricNames();
    const unknown = dashboards.flatMap((d) => d.queries.flatMap((q) => metricNames(q.expr).filter((m) => !exported.has(m)).map((m) => `${d.title} / ${q.panel} [${q.refId}]: ${m}`)));
    expect(unknown).toEqual([]);
  });

  test('every expression of every dashboard parses, and returns data when the metrics it reads exist', async () => {
    const names = await prom!.labelValues('__name__');
    const present = new Set(names.ok ? names.values : []);
    const failures: string[] = [];
    const summary: string[] = [];
    for (const d of dashboards) {
      const combos = await assignments(d, failures);
      let expected = 0;
      const parseOnly: string[] = [];
      for (const q of d.queries) {
        const expectData = metricNames(q.expr).every((m) => present.has(m));
        let data = false;
        for (const a of combos) {
          const expr = interpolate(q.expr, a);
          const r = await prom!.query(expr);
          if (!r.ok) failures.push(`${d.title} / ${q.panel} [${q.refId}] does not parse: ${r.error}\n    ${expr}`);
          data ||= hasData(r);
        }
        if (expectData) expected++;
        else parseOnly.push(`${q.panel} [${q.refId}]`);
        if (expectData && !data) failures.push(`${d.title} / ${q.panel} [${q.refId}] returns no data for any of ${JSON.stringify(combos)}, though ${metricNames(q.expr).join(', ')} exist\n    ${q.expr}`);
      }
      summary.push(`${d.title}: ${d.queries.length} expressions, ${expected} with their metrics present, variables ${JSON.stringify(combos)}; parsed only (nothing produced their metrics): ${parseOnly.join('; ') || 'none'}`);
      // Each dashboard has panels the traffic applies to: a dashboard that matches nothing is a failure, not a pass.
      expect(`${d.title}: ${expected > d.queries.length / 3}`).toBe(`${d.title}: true`);
    }
    process.stderr.write(`${summary.join('\n')}\n`);
    expect(failures).toEqual([]);
  }, 120_000);
});
