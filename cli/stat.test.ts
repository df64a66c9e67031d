import { createServer, type Server } from 'node:net';
import type { StatRow } from '../control-plane/stats/stats-store.js';
import { createServer as createHttpServer } from '../common/node-http.js';
import { formatTable, selectRows, selection, statCommand } from './stat.js';

const row = (over: Partial<StatRow>): StatRow => ({
  kind: 'service', name: 'web', namespace: 'default', reporters: 2, requestRate: 12.345, successRate: 0.9876, latencyMs: { p50: 3.21, p95: 45.6, p99: 250 },
  tcp: { open: 1, openedRate: 0 }, mtlsShare: 1, ...over,
});

describe('wren stat: arguments', () => {
  test('resources and edges select kinds and names', () => {
    expect(selection([], {})).toMatchObject({ kinds: ['service', 'workload'], name: null });
    expect(selection(['svc/web'], {})).toMatchObject({ kinds: ['service'], name: 'web' });
    expect(selection(['deploy'], { namespace: 'shop' })).toMatchObject({ kinds: ['workload'], name: null, namespace: 'shop' });
    expect(selection(['ns/shop'], {})).toMatchObject({ kinds: ['namespace'], name: 'shop' });
    expect(selection([], { from: 'deploy/a', to: 'svc/b' })).toMatchObject({ kinds: ['edge'], from: 'a', to: 'b' });
  });

  test('bad arguments are usage errors that say what was expected', () => {
    expect(() => selection(['pod/x'], {})).toThrow(/resource: expected svc, deploy, ns\[\/NAME\], got "pod\/x"/);
    expect(() => selection(['svc/a', 'svc/b'], {})).toThrow(/one resource at a time/);
    expect(() => selection([], { from: 'svc/a' })).toThrow(/--from: expected deploy\[\/NAME\]/);
    expect(() => selection([], { to: 'svc' })).toThrow(/--from and --to need a name/);
    expect(() => selection(['svc/a'], { to: 'svc/b' })).toThrow(/give no resource with them/);
  });

  test('usage errors exit 2 and print the usage', async () => {
    let err = '';
    expect(await statCommand(['--watch', '--interval', '10ms'], () => undefined, (s) => void (err += s))).toBe(2);
    expect(err).toMatch(/^wren stat: --interval: at least 100ms\n\nUsage: wren stat/);
    expect(await statCommand(['-o', 'yaml'], () => undefined, () => undefined)).toBe(2);
    // --interval without --watch would be ignored: refused.
    err = '';
    expect(await statCommand(['--interval', '5s'], () => undefined, (s) => void (err += s))).toBe(2);
    expect(err).toMatch(/^wren stat: --interval: only with --watch \(-w\)\n\nUsage: wren stat/);
    // A malformed address is bad usage too, not 'cannot reach the control plane' (exit 1).
    err = '';
    expect(await statCommand(['--control-plane', 'a b'], () => undefined, (s) => void (err += s))).toBe(2);
    expect(err).toMatch(/^wren stat: --control-plane: 'a b' is not HOST:PORT\n\nUsage: wren stat/);
  });
});

test('--timeout bounds each request to the control plane (5 s without it), as in the other commands that read it', async () => {
  // A control plane that takes the connection and never answers.
  const held: import('node:net').Socket[] = [];
  const server: Server = createServer((s) => void held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  try {
    let err = '';
    const started = Date.now();
    expect(await statCommand(['--control-plane', `127.0.0.1:${port}`, '--timeout', '300ms'], () => undefined, (s) => void (err += s))).toBe(1);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(err).toMatch(/^wren stat: cannot reach the control plane at 127\.0\.0\.1:\d+ \(.*time/i);
    err = '';
    expect(await statCommand(['--timeout', '0'], () => undefined, (s) => void (err += s))).toBe(2);
    expect(err).toMatch(/^wren stat: --timeout: '0' is not a number of seconds/);
  } finally {
    for (const s of held) s.destroy();
    server.close();
  }
});

describe('wren stat: rows', () => {
  test('NAME or NAME.NAMESPACE picks a row; -n keeps one namespace; edges filter by caller and service', () => {
    const rows = [row({}), row({ namespace: 'shop' }), row({ name: 'api' })];
    expect(selectRows(rows, selection(['svc/web'], {})).map((r) => r.namespace)).toEqual(['default', 'shop']);
    expect(selectRows(rows, selection(['svc/web.shop'], {})).map((r) => r.namespace)).toEqual(['shop']);
    expect(selectRows(rows, selection(['svc'], { namespace: 'default' })).map((r) => r.name)).toEqual(['web', 'api']);
    const edges = [
      row({ kind: 'edge', from: { workload: 'client', namespace: 'default' }, to: { service: 'web.default', workload: 'web' } }),
      row({ kind: 'edge', from: { workload: 'client', namespace: 'default' }, to: { service: 'api.default', workload: 'api' } }),
    ];
    expect(selectRows(edges, selection([], { from: 'deploy/client', to: 'svc/api' })).map((r) => r.to?.service)).toEqual(['api.default']);
    expect(selectRows(edges, selection([], { from: 'deploy/client' }))).toHaveLength(2);
    expect(selectRows(edges, selection([], { from: 'deploy/other' }))).toHaveLength(0);
  });

  test('the table: aligned columns, percentages, rates, latencies; no rows says so', () => {
    expect(formatTable([row({}), row({ name: 'api', successRate: null, latencyMs: null, mtlsShare: null, requestRate: 0 })], '1m')).toBe(
      'NAMESPACE  SERVICE  MESHED  SUCCESS  RPS    LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN  MTLS\n'
      + 'default    web      2       98.76%   12.35  3.2ms        46ms         250ms        1         100.00%\n'
      + 'default    api      2       -        0.00   -            -            -            1         -\n',
    );
    expect(formatTable([], '30s')).toBe('No traffic reported in the last 30s.\n');
    // A proxy's report is its own claim: a name with terminal escapes is printed escaped.
    expect(formatTable([row({ name: 'api\x1b]0;pwned\x07' })], '1m').split('\n')[1]).toMatch(/^default\s+api\\x1b\]0;pwned\\x07\s+2\s/);
    expect(formatTable([row({ kind: 'edge', from: { workload: 'client', namespace: 'default' }, to: { service: 'web.default', workload: 'web' } })], '1m').split('\n')[1])
      .toMatch(/^default\/client\s+web\.default\s+2\s+98\.76%/);
  });
});

/** A control plane answering /api/stat with `body` and `status` (names come from proxies' reports: a compromised one's claim). */
async function fakeControlPlane(status: number, body: unknown): Promise<{ addr: string; close: () => void }> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { addr: `127.0.0.1:${(server.address() as { port: number }).port}`, close: () => server.close() };
}

// eslint-disable-next-line no-control-regex
const TERMINAL_ACTS_ON = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

test('-o json writes C1 and bidi controls from the control plane as \\u escapes (JSON.stringify leaves them raw): the same JSON, nothing a terminal acts on', async () => {
  const name = 'web\x9b2J\u202egnp.exe\x7f';
  const cp = await fakeControlPlane(200, { rows: [row({ name })] });
  try {
    let out = '';
    expect(await statCommand(['svc', '--control-plane', cp.addr, '-o', 'json'], (s) => void (out += s), () => undefined)).toBe(0);
    expect(out).not.toMatch(TERMINAL_ACTS_ON);
    expect((JSON.parse(out) as { rows: { name: string }[] }).rows[0].name).toBe(name);
  } finally {
    cp.close();
  }
});

test("a control plane's error message is printed with what a terminal acts on as escapes (ESC, C1, bidi), not raw", async () => {
  const cp = await fakeControlPlane(403, { error: 'denied\x1b]52;c;cHduZWQ=\x07\x9b2J\u202e' });
  try {
    let err = '';
    expect(await statCommand(['svc', '--control-plane', cp.addr], () => undefined, (s) => void (err += s))).toBe(1);
    expect(err).toContain('403 denied\\x1b]52;c;cHduZWQ=\\x07\\x9b2J\\u202e');
    expect(err.slice(0, -1)).not.toMatch(TERMINAL_ACTS_ON);
  } finally {
    cp.close();
  }
});
