import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { parseJwtRule } from '../../contract/parse.js';
import { JwksRegistry, type JwksFetchOutcome } from './jwks-source.js';

/**
 * requestAuthn.jwksFetchTimeoutMs: a JWKS URL that does not answer in time, or stops
 * in the middle of its body, is an `error` fetch (wren_jwks_fetches_total) and is counted
 * as a timeout too (onTimeout: wren_limit_exceeded_total{limit="jwks-fetch-timeout"}), so
 * the timeout shows as itself when it fires; other errors (a 404) are not.
 */
let server: Server;
const stalled = new Set<ServerResponse>();
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/silent') return void stalled.add(res); // never a status line
    if (req.url === '/half') {
      stalled.add(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.write('{"keys":['); // and never the rest
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

async function outcomes(path: string): Promise<string[]> {
  const fetches: string[] = [];
  const registry = new JwksRegistry({
    clock: systemClock,
    logger: createLogger({ sink: () => undefined }),
    settings: { refreshMs: 300_000, retryMs: 300_000, fetchTimeoutMs: 200, minRefetchIntervalMs: 30_000 },
    onFetch: (_s, outcome: JwksFetchOutcome) => fetches.push(outcome),
    onTimeout: (source) => fetches.push(`timeout ${source.replace(/:\d+\//, ':PORT/')}`),
  });
  const jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  try {
    expect(await registry.sourceFor(parseJwtRule({ issuer: 'https://id.example.com', jwksUri }, 'rule')).current()).toBeNull();
  } finally {
    registry.close();
  }
  return fetches;
}

test.each([
  ['no response at all', '/silent', ['error', 'timeout uri:http://127.0.0.1:PORT/silent']],
  ['a body that stops half way', '/half', ['error', 'timeout uri:http://127.0.0.1:PORT/half']],
  ['a 404: an error, no timeout', '/missing', ['error']],
])('%s', async (_what, path, counted) => {
  expect(await outcomes(path)).toEqual(counted);
});
