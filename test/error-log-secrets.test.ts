import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { closedPort } from './helpers/closed-port.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (error-log-query-token).
 *
 * What a user does: an app calls `GET /pay?access_token=<bearer token>` (RFC 6750 section
 * 2.3, the query location RequestAuthentication reads by default) to a service that is
 * down, or to a name with no route. Access logs are off (the default).
 *
 * What happens: layers/errors-to-response.ts logs every failed request at warn, on by
 * default, with `path: req.path`: the whole request-target, query string and token
 * included, and of any length the head limit allows. The proxy's own log (stderr, what
 * `kubectl logs` and every log shipper collect) then holds live bearer tokens.
 *
 * What should happen: a credential never reaches a log (issue #13: "never log ... values
 * that are secrets"). The project already keeps query strings out of its other logs: the
 * authorization and JWT denial lines log `path.split('?')[0]` (policy/policy-telemetry.ts:
 * "never the token (nor the query string, which may carry it)") and the access log
 * redacts `access_token` (access-log/redact-query.ts). Envoy logs no request path at warn.
 */
const pki = testPki();
let client: Proxy;
const logs: string[] = [];
const TOKEN = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ';

beforeAll(async () => {
  // A port nothing listens on: the endpoint refuses connections.
  const refused = await closedPort();
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    logs,
    services: [meshService('dead', 80, [{ appPort: refused, proxy: null }], { policy: { outlierDetection: { enabled: false } } })],
  });
}, 20_000);

afterAll(async () => {
  await client.close();
});

function get(host: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test.each([['dead', 502], ['no-such-service', 404]])('a failed request to %s does not write its ?access_token= to the proxy log', async (host, status) => {
  const before = logs.length;
  expect(await get(host, `/pay?amount=5&access_token=${TOKEN}`)).toBe(status);
  await new Promise((r) => setTimeout(r, 50));
  const lines = logs.slice(before);
  expect(lines.filter((l) => l.includes(TOKEN))).toEqual([]);
});

/**
 * Found by the adversary review (error-log-unbounded-line).
 *
 * What an attacker does: sends requests that fail cheaply (a Host nothing routes to) with
 * a request-target as long as the head limit allows (16 KiB by default; up to 1 MiB configurable).
 *
 * What happens: each one writes a warn line carrying the whole path to the proxy's log,
 * uncapped: 15 KB of log per 15 KB request, no sampling, no rate limit. That log is
 * process.stderr, which Node writes to a pipe asynchronously: when the log reader falls
 * behind, the unwritten lines stay in the proxy's memory without bound (measured here
 * with a stalled pipe reader: writableLength 250 MB after 1.2 s of lines), whereas the
 * access log caps its path at 1024 characters and its buffer at 4 MiB, dropping and
 * counting the rest (access-log/access-log.ts).
 *
 * What should happen: a client-controlled string in a log line is capped as the access
 * log caps it (BRIEF: every limit has a default and a metric when it fires).
 */
test('a failing request with a 15 KB path does not write a 15 KB line to the proxy log', async () => {
  const before = logs.length;
  expect(await get('no-such-service', `/${'a'.repeat(15_000)}`)).toBe(404);
  await new Promise((r) => setTimeout(r, 50));
  const longest = Math.max(0, ...logs.slice(before).map((l) => l.length));
  // Today: one 15 KB line.
  expect(longest).toBeLessThan(4096);
});
