import type { Service } from '../contract/model.js';
import { formatView, parsePod } from './proxy-config.js';

test('POD as NAME.NAMESPACE, NAMESPACE/NAME or NAME', () => {
  expect(parsePod('web-0.shop')).toEqual({ namespace: 'shop', name: 'web-0' });
  expect(parsePod('shop/web-0')).toEqual({ namespace: 'shop', name: 'web-0' });
  expect(parsePod('web-0')).toEqual({ namespace: 'default', name: 'web-0' });
  expect(() => parsePod('web 0')).toThrow(/is not a pod/);
});

test('routes: one row per route in force per service', () => {
  const svc = {
    name: 'web', namespace: 'shop', clusterIPs: [], ports: [], policy: {} as Service['policy'],
    routes: [{ kind: 'HTTPRoute', name: 'canary', namespace: 'shop', ports: [80], rules: [{}, {}] }],
  } as unknown as Service;
  const out = formatView({ from: 'x', version: 'v1', services: [svc], policy: null, telemetry: null, cert: null }, 'routes', 0);
  expect(out).toMatch(/^SERVICE\s+ROUTE\s+KIND\s+PORTS\s+RULES$/m);
  expect(out).toMatch(/^web\.shop\s+shop\/canary\s+HTTPRoute\s+80\s+2$/m);
  expect(formatView({ from: 'x', version: 'v1', services: [svc], policy: null, telemetry: null, cert: null }, 'certs', 0)).toContain('no certificate reported');
});

/**
 * `--admin` reads a pod's own admin port, whose answers are that proxy's to make: a
 * compromised workload's sidecar can put escape sequences anywhere in them (OSC 52 writes
 * the operator's clipboard, OSC 0 the window title). They were printed raw outside the
 * table cells (the header's version, the policy names, the certificate's identity and
 * serial, an error's body); now every such text goes through printable(), as proxy-status does.
 */
test('--admin: what the proxy answers is printed with the characters a terminal acts on escaped, in every view and in an error', async () => {
  const { createServer } = await import('node:http');
  const { proxyConfigCommand } = await import('./proxy-config.js');
  const evil = '\x1b]52;c;Y3VybA==\x07\x1b[2J\u202e\x9b';
  let fail = false;
  const server = createServer((req, res) => {
    if (fail) return void res.writeHead(500).end(`boom ${evil}`);
    const body = req.url === '/certs'
      ? { identity: `spiffe://x/${evil}`, serial: evil, notAfter: '2030-01-01T00:00:00.000Z', trustAnchors: [{ fingerprint256: evil }] }
      : { version: evil, services: [], inboundPolicy: { mtls: { mode: evil }, portLevelMtls: { [evil]: { mode: evil } }, authorizationPolicies: [{ name: evil, action: evil, rules: [] }], jwtRules: [] }, telemetry: { x: evil } };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const admin = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const acted = (s: string) => [...s].filter((c) => c !== '\n' && (c < ' ' || (c >= '\x7f' && c <= '\x9f') || (c >= '\u202a' && c <= '\u202e') || (c >= '\u2066' && c <= '\u2069')));
  try {
    for (const kind of ['clusters', 'routes', 'policy', 'certs']) {
      const out: string[] = [];
      expect(await proxyConfigCommand(['web-0', kind, '--admin', admin], (s) => void out.push(s), (s) => void out.push(s))).toBe(0);
      expect([kind, acted(out.join(''))]).toEqual([kind, []]);
      expect(out.join('')).toContain('\\x1b]52;c;');
    }
    fail = true;
    const err: string[] = [];
    expect(await proxyConfigCommand(['web-0', 'policy', '--admin', admin], () => undefined, (s) => void err.push(s))).toBe(1);
    expect(err.join('')).toContain('HTTP 500 boom \\x1b]52;c;');
    expect(acted(err.join(''))).toEqual([]);
  } finally {
    server.close();
  }
});

test('--admin: an answer that is JSON but not a config dump is exit 1 saying so, not a stack trace (adv32)', async () => {
  const { createServer } = await import('node:http');
  const { proxyConfigCommand } = await import('./proxy-config.js');
  const server = createServer((_req, res) => void res.writeHead(200).end(JSON.stringify({ version: 'v1', services: [{ name: 'a', namespace: 'b', ports: [{ port: 80 }] }] })));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const admin = `127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const err: string[] = [];
    expect(await proxyConfigCommand(['web-0', 'clusters', '--admin', admin], () => undefined, (s) => void err.push(s))).toBe(1);
    expect(err.join('')).toMatch(new RegExp(`^wren proxy-config: cannot show what proxy admin ${admin} answered: not a clusters view this CLI reads \\(.+\\)\\n$`));
  } finally {
    server.close();
  }
});
