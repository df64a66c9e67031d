import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { parseAppProbes } from '../../contract/app-probes.js';
import { testPki } from '../../test/helpers/pki.js';
import { AppProber, type AppProbeResult } from './app-prober.js';

/**
 * The app probes against real apps on loopback (port 0): HTTP and HTTPS with kubelet's
 * pass range and the probe's headers, TCP, a timeout on the injected clock, and one run
 * shared by concurrent requests. (gRPC runs against a real grpc-js server in test/app-probes.test.ts.)
 */
const servers: (Server | HttpServer)[] = [];
const sockets = new Set<Socket>();
const listen = async <S extends Server | HttpServer>(s: S): Promise<number> => {
  servers.push(s);
  s.on('connection', (c: Socket) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
};
afterAll(async () => {
  for (const c of sockets) c.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

let status = 200;
const seen: { url: string; headers: IncomingHttpHeaders; raw: string[] }[] = [];
const app = createHttpServer((req, res) => {
  seen.push({ url: req.url!, headers: req.headers, raw: req.rawHeaders });
  res.writeHead(status).end('body the prober does not pass on');
});
const tls = testPki().issue('demo', 'web');
const secure = createHttpsServer({ key: tls.keyPem, cert: tls.certChainPem }, (req, res) => res.writeHead(204).end());
let hung: Socket[] = [];
const silent = createNetServer((s) => void hung.push(s));

const clock = new FakeClock();
const results: [string, AppProbeResult][] = [];
let ports: { app: number; secure: number; silent: number; closed: number };
let prober: AppProber;

beforeAll(async () => {
  const gone = createNetServer();
  const closed = await listen(gone);
  await new Promise((r) => gone.close(r));
  servers.pop();
  ports = { app: await listen(app), secure: await listen(secure), silent: await listen(silent), closed };
  const probes = parseAppProbes({
    '/app-health/web/readyz': { kind: 'http', port: ports.app, path: '/healthz?deep=1', httpHeaders: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'a' }, { name: 'X-Probe', value: 'b' }] },
    '/app-health/web/livez': { kind: 'http', port: ports.secure, scheme: 'HTTPS', path: '/live' },
    '/app-health/web/startupz': { kind: 'tcp', port: ports.app },
    '/app-health/gone/livez': { kind: 'tcp', port: ports.closed },
    '/app-health/gone/readyz': { kind: 'http', port: ports.closed },
    '/app-health/hung/readyz': { kind: 'http', port: ports.silent, timeoutSeconds: 3 },
    '/app-health/hung/livez': { kind: 'tcp', port: ports.silent, timeoutSeconds: 2 },
  }, 'appProbes');
  prober = new AppProber({ probes, address: '127.0.0.1', clock, logger: createLogger({ level: 'error', sink: () => undefined }), onResult: (p, r) => void results.push([p, r]) });
});
beforeEach(() => {
  results.splice(0);
  seen.splice(0);
  status = 200;
});

test('HTTP: GET with the probe\'s path and headers (its Host wins), kubelet\'s defaults otherwise, a fresh connection; 200-399 pass', async () => {
  for (const code of [200, 204, 302, 399]) {
    status = code;
    expect(await prober.run('/app-health/web/readyz')).toEqual({ result: 'success', reason: 'ok' });
  }
  expect(seen[0].url).toBe('/healthz?deep=1');
  expect(seen[0].headers).toMatchObject({ host: 'web.local', 'user-agent': 'kube-probe/wren', accept: '*/*', connection: 'close', 'x-probe': 'a, b' });
  expect(seen[0].raw.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host')).toHaveLength(1);
  expect(results).toEqual(Array(4).fill(['web/readyz', 'success']));
});

test('HTTP: 400 and up fail with the status as the reason; a refused connection fails', async () => {
  for (const code of [400, 404, 500, 503]) {
    status = code;
    expect(await prober.run('/app-health/web/readyz')).toEqual({ result: 'failure', reason: `HTTP ${code}` });
  }
  const refused = await prober.run('/app-health/gone/readyz');
  expect(refused.result).toBe('failure');
  expect(refused.reason).toMatch(/ECONNREFUSED/);
  expect(results.at(-1)).toEqual(['gone/readyz', 'failure']);
});

test('HTTPS: the app\'s certificate is not verified, as kubelet does not', async () => {
  expect(await prober.run('/app-health/web/livez')).toEqual({ result: 'success', reason: 'ok' });
});

test('TCP: a connection that opens passes, a refused one fails', async () => {
  expect(await prober.run('/app-health/web/startupz')).toEqual({ result: 'success', reason: 'ok' });
  const r = await prober.run('/app-health/gone/livez');
  expect([r.result, r.reason]).toEqual(['failure', expect.stringMatching(/ECONNREFUSED/)]);
  expect(results).toEqual([['web/startupz', 'success'], ['gone/livez', 'failure']]);
});

test('an app that accepts and never answers times out at the probe\'s timeoutSeconds, on the injected clock', async () => {
  const until = async (n: number) => {
    for (let i = 0; i < 200 && hung.length < n; i++) await new Promise((r) => setTimeout(r, 5));
  };
  hung = [];
  let done: unknown;
  const http = prober.run('/app-health/hung/readyz').then((o) => (done = o));
  await until(1);
  clock.advance(2_999);
  await new Promise((r) => setTimeout(r, 20));
  expect(done).toBeUndefined();
  clock.advance(1);
  expect(await http).toEqual({ result: 'timeout', reason: 'timed out after 3s' });
  const tcp = prober.run('/app-health/hung/livez');
  clock.advance(2_000);
  expect(await tcp).toEqual({ result: 'timeout', reason: 'timed out after 2s' });
  expect(results).toEqual([['hung/readyz', 'timeout'], ['hung/livez', 'timeout']]);
  for (const s of hung) s.destroy();
});

test('concurrent requests for one probe share its run: one connection to the app, one count', async () => {
  const runs = await Promise.all(Array.from({ length: 20 }, () => prober.run('/app-health/web/readyz')));
  expect(new Set(runs).size).toBe(1);
  expect([seen.length, results]).toEqual([1, [['web/readyz', 'success']]]);
  // The next request after it ends runs again.
  await prober.run('/app-health/web/readyz');
  expect(seen).toHaveLength(2);
  expect([prober.has('/app-health/web/readyz'), prober.has('/app-health/nope/readyz')]).toEqual([true, false]);
});
