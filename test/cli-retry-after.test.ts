import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { statCommand } from '../cli/stat.js';
import { proxyStatusCommand } from '../cli/proxy-status.js';
import { proxyAwaitCommand } from '../cli/proxy-await.js';
import { trustAnchorsCommand } from '../cli/trust-anchors.js';
import { KubeHttp } from '../cli/kube-http.js';
import { apiChecks } from '../cli/check/kube-checks.js';
import * as k8s from '@kubernetes/client-node';

/**
 * The CLI against an admin port that answers 429 / 503 with Retry-After (the control
 * plane's render budget, the API server's priority and fairness, a busy proxy): each
 * command asks again after the wait, within its bounds, and says so when it gives up
 * (cli/retry-after.ts; docs/operations.md, Busy answers). Real HTTP, a stub server whose
 * answers the test plans.
 */
describe('commands that poll an admin port honour 429/503 + Retry-After, within bounds', () => {
  let stub: Server;
  let port: number;
  /** What the stub answers next, per path: a list consumed in order, the last one repeated. */
  const plan = new Map<string, { status: number; retryAfter?: string; body: string }[]>();
  const hits = new Map<string, number>();
  beforeAll(async () => {
    stub = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      hits.set(path, (hits.get(path) ?? 0) + 1);
      const list = plan.get(path) ?? [{ status: 404, body: '{}' }];
      const a = list.length > 1 ? list.shift()! : list[0];
      res.writeHead(a.status, { 'content-type': 'application/json', ...(a.retryAfter ? { 'retry-after': a.retryAfter } : {}) });
      res.end(a.body);
    });
    await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
    port = (stub.address() as AddressInfo).port;
  });
  afterAll(() => new Promise((r) => stub.close(r)));

  test('wren proxy-status: a 429 with Retry-After: 1 is asked again and shown', async () => {
    plan.set('/debug/proxy-status', [{ status: 429, retryAfter: '1', body: '{"error":"slow down"}' }, { status: 200, body: JSON.stringify({ latestVersion: 'v1', ready: true, proxies: [] }) }]);
    hits.clear();
    let out = '';
    let err = '';
    expect(await proxyStatusCommand(['--control-plane', `127.0.0.1:${port}`], (s) => void (out += s), (s) => void (err += s))).toBe(0);
    expect(hits.get('/debug/proxy-status')).toBe(2);
    expect(out).toMatch(/no proxies connected/);
  });

  test('a server that keeps refusing: the command gives up after the bounded attempts with a message saying so (exit 1)', async () => {
    plan.set('/debug/proxy-status', [{ status: 503, retryAfter: '1', body: '{"error":"busy"}' }]);
    hits.clear();
    let out = '';
    expect(await proxyStatusCommand(['--control-plane', `127.0.0.1:${port}`, '-o', 'json'], (s) => void (out += s), () => undefined)).toBe(1);
    expect(hits.get('/debug/proxy-status')).toBe(4);
    expect(out).toMatch(/still HTTP 503 with Retry-After: 1 after 4 attempt\(s\) and 3 s of waiting .*: the server is overloaded, try again later/);
  }, 15_000);

  test('a Retry-After longer than the CLI waits at once: given up at once, saying how long the server asked', async () => {
    plan.set('/api/stat', [{ status: 503, retryAfter: '120', body: '{"error":"busy"}' }]);
    hits.clear();
    let err = '';
    expect(await statCommand(['svc', '--control-plane', `127.0.0.1:${port}`], () => undefined, (s) => void (err += s))).toBe(1);
    expect(hits.get('/api/stat')).toBe(1);
    expect(err).toBe(`wren stat: 127.0.0.1:${port}/api/stat?kind=service&window=1m: HTTP 503 with Retry-After: 120, longer than the 10 s the CLI waits at once: the server is overloaded, try again later\n`);
  });

  // eslint-disable-next-line no-control-regex
  const TERMINAL_ACTS_ON = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

  test('a Retry-After that is no HTTP-date (RFC 9110 section 5.6.7) is no request to wait, and none of the server\'s text reaches the terminal raw', async () => {
    // Date.parse skips a parenthesised comment, so this was a date in 2094 to the CLI: too long
    // a wait, and the header (C1 CSI, U+009B, which Node's parser lets through) echoed raw.
    plan.set('/debug/trust', [{ status: 503, retryAfter: 'Sun, 06 Nov 2094 08:49:37 GMT (\x9b2J)', body: '{"error":"busy"}' }]);
    hits.clear();
    let err = '';
    expect(await trustAnchorsCommand(['check', '--admin', `127.0.0.1:${port}`, '--old', 'ab'.repeat(32)], () => undefined, (s) => void (err += s))).toBe(1);
    expect(hits.get('/debug/trust')).toBe(1);
    expect(err).toBe(`wren trust-anchors check: cannot read 127.0.0.1:${port}/debug/trust: GET /debug/trust answered 503\n`);
  });

  test('wren trust-anchors check: a body that is not JSON is quoted by the parse error, escaped', async () => {
    plan.set('/debug/trust', [{ status: 200, body: '\x9b2J\u202e' }]);
    let err = '';
    expect(await trustAnchorsCommand(['check', '--admin', `127.0.0.1:${port}`, '--old', 'ab'.repeat(32)], () => undefined, (s) => void (err += s))).toBe(1);
    expect(err).toMatch(/^wren trust-anchors check: cannot read .*\\x9b2J\\u202e/);
    expect(err.slice(0, -1)).not.toMatch(TERMINAL_ACTS_ON);
  });

  test('wren proxy await: a 503 with Retry-After: 1 makes it pause 1 s, not --interval (100 ms), before asking again', async () => {
    plan.set('/ready', [{ status: 503, retryAfter: '1', body: 'busy' }, { status: 200, body: 'ready' }]);
    hits.clear();
    let out = '';
    const started = Date.now();
    expect(await proxyAwaitCommand(['--admin-port', String(port), '--timeout', '10s'], (s) => void (out += s), () => undefined)).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(hits.get('/ready')).toBe(2);
    expect(out).toMatch(/answered 200 after \d+ ms \(2 attempts\)/);
  });

  test('the API server\'s own 429 (API Priority and Fairness) on a GET the CLI makes through it is asked again after Retry-After', async () => {
    plan.set('/api/v1/namespaces/wren-system/pods', [{ status: 429, retryAfter: '1', body: '{"kind":"Status","code":429}' }, { status: 200, body: '{"items":[]}' }]);
    hits.clear();
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'stub', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }], users: [{ name: 'u' }],
      contexts: [{ name: 'c', cluster: 'stub', user: 'u' }], currentContext: 'c',
    });
    expect(await new KubeHttp(kc, 5000).getJson('/api/v1/namespaces/wren-system/pods')).toEqual({ items: [] });
    expect(hits.get('/api/v1/namespaces/wren-system/pods')).toBe(2);
    // wren check's first request, GET /version, too: a 429 there had failed kubernetes-api and skipped every other check.
    plan.set('/version', [{ status: 429, retryAfter: '1', body: '{"kind":"Status","code":429}' }, { status: 200, body: '{"major":"1","minor":"30","gitVersion":"v1.30.2"}' }]);
    const api = await apiChecks({ kube: new KubeHttp(kc, 5000), now: () => Date.now(), minDays: 7 });
    expect(api.reachable).toBe(true);
    expect(api.outcomes.slice(0, 2).map((o) => [o.id, o.status, o.message])).toEqual([
      ['kubernetes-api', 'ok', `the API server http://127.0.0.1:${port} answers`],
      ['kubernetes-version', 'ok', 'Kubernetes v1.30.2 (>= 1.29)'],
    ]);
    expect(hits.get('/version')).toBe(2);
  });
});
