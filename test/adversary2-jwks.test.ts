import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { parseJwtRule } from '../contract/parse.js';
import { JwksRegistry, type JwksFetchOutcome } from '../proxy/policy/jwks-source.js';

/**
 * Adversarial review of JWKS fetching (issue #14.3): a JWKS URL that answers with an
 * endless body (a hostile or compromised issuer, or anyone on the path of an http://
 * jwksUri). The proxy reads it with `await res.text()` and no size bound, so it buffers
 * whatever arrives until the 5 s fetch timeout: gigabytes on a fast link, in every sidecar
 * of the workload at once.
 */
let server: Server;
let sent = 0;
beforeAll(async () => {
  const chunk = Buffer.alloc(1 << 20, 0x20); // 1 MiB of JSON whitespace
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"keys":[');
    const pump = (): void => {
      while (!res.destroyed && sent < 512 * (1 << 20)) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end(']}');
    };
    res.on('close', () => undefined);
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

test('a JWKS URL answering an endless body is cut at the size bound (not buffered until the fetch timeout)', async () => {
  const fetches: JwksFetchOutcome[] = [];
  const registry = new JwksRegistry({
    clock: systemClock,
    logger: createLogger({ sink: () => undefined }),
    settings: { refreshMs: 300_000, retryMs: 10_000, fetchTimeoutMs: 3_000, minRefetchIntervalMs: 30_000 },
    onFetch: (_s, outcome) => fetches.push(outcome),
  });
  const jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  const source = registry.sourceFor(parseJwtRule({ issuer: 'https://id.example.com', jwksUri }, 'rule'));
  const keys = await source.current();
  registry.close();
  expect(keys).toBeNull();
  expect(fetches).toEqual(['too-large']);
  // A JWKS is a few kilobytes (Envoy bounds a remote_jwks body by its buffer limit, 1 MiB
  // by default): the proxy must give up after a bound in that order, not read 100s of MB.
  expect(sent).toBeLessThan(16 * (1 << 20));
}, 20_000);
