import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from '../helpers/pki.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.js';
import { httpEchoBackend, send, type EchoBackend } from '../helpers/route-backends.js';

/**
 * ADV5-6: a RegularExpression route match is run by V8's backtracking engine on a path the
 * caller chooses, so one request can freeze a sidecar for minutes.
 *
 * contract/parse-routes.ts refuses lookaround and backreferences "which make catastrophic
 * backtracking possible", but the classic cause is a nested quantifier, which is plain RE2
 * syntax (what the Gateway API points at) and passes both the control plane's and the
 * proxy's checks. RE2, Envoy's safe_regex and Istio's matcher run in linear time; V8 does not
 * (proxy/routing/route-matcher.ts: `c.pathRe.test(...)` on the data path).
 *
 * What a user does: a service owner writes an ordinary HTTPRoute rule
 * `path: { type: RegularExpression, value: "/docs/([\w-]+/?)*" }` (documents under /docs/).
 * What an attacker does: any request through a sidecar that has this route, with a path of
 * the shape `/docs/aaaa...a!` (e.g. through a frontend that forwards user paths to the
 * service). What happens: the sidecar's event loop spins in the regex (2^n steps for n
 * letters; 40 letters is hours), every other request and connection of the pod stalls,
 * /ready and /live stop answering and the kubelet restarts the pod; the attacker repeats.
 * What should happen: matching is linear (RE2 semantics: refuse such patterns, or run them
 * on a linear-time engine such as V8's `--enable-experimental-regexp-engine` / an RE2
 * binding), and the other requests are served.
 */
const pki = testPki();
let dir: string;
let client: ProxyProcess;
let docs: EchoBackend;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-adv5-redos-'));
  docs = await httpEchoBackend('docs');
  client = await startProxyProcess(pki, dir, 'client', {
    mesh: {
      services: [{
        name: 'docs', namespace: 'default',
        ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: docs.port }] }],
        routes: [{
          kind: 'HTTPRoute', name: 'docs', ports: [80],
          rules: [
            { matches: [{ path: { type: 'RegularExpression', value: '/docs/([\\w-]+/?)*' } }], backends: [{ name: 'docs', namespace: 'default', port: 80 }] },
            { backends: [{ name: 'docs', namespace: 'default', port: 80 }] },
          ],
        }],
      }],
    },
  });
}, 30_000);

afterAll(async () => {
  await client?.close();
  await docs?.close();
  await rm(dir, { recursive: true, force: true });
});

test('ADV5-6: a request whose path makes the route regex backtrack must not stop the sidecar serving others', async () => {
  // ADVERSARY: ADV5-6
  // The route works.
  expect((await send(client.outboundPort, 'docs', '/docs/guide/intro')).echoed?.backend).toBe('docs');
  // The attack: not awaited (on main it never gets an answer).
  void send(client.outboundPort, 'docs', `/docs/${'a'.repeat(40)}!`).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 200));
  // Another caller of the same sidecar, and its health endpoint, within 3 s.
  const t0 = Date.now();
  const other = await Promise.race([
    send(client.outboundPort, 'docs', '/index.html').then((r) => r.status, (e: Error) => `error: ${e.message}`),
    new Promise<string>((r) => setTimeout(() => r('no answer within 3 s'), 3000)),
  ]);
  const live = await Promise.race([
    fetch(`http://127.0.0.1:${client.adminPort}/live`).then((r) => r.status, () => 'down'),
    new Promise<string>((r) => setTimeout(() => r('no answer within 1 s'), 1000)),
  ]);
  expect({ other, live, withinMs: Date.now() - t0 < 4000 }).toEqual({ other: 200, live: 200, withinMs: true });
}, 20_000);
