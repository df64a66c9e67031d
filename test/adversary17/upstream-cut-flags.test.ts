import { request as httpRequest } from 'node:http';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import { lineOf, obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * Who cut a response body. The app resets its connection after the head and a few bytes
 * (fake app /reset): Envoy flags that UR (UpstreamRemoteReset) at the sidecar whose
 * upstream it is, and the client sidecar, whose upstream stream was reset in turn, UR too.
 * Wren flagged it DC (downstream connection termination) at both: the client's side is torn
 * down because of the upstream's failure, which fired the request's abort signal, so the
 * client was blamed for the app's crash. A client that really leaves mid-body stays DC.
 */
let web: FakeApp, pair: ObsPair;

beforeAll(async () => {
  web = await fakeApp('web');
  pair = await obsPair([{ name: 'web', port: 80, appPort: web.port }]);
});

afterAll(async () => {
  await pair.close();
  await web.close();
});

const flagsOf = (s: { labels: Record<string, string>; value: number }[]) => s.filter((x) => x.labels.response_code === '200').map((x) => x.labels.response_flags);

test('the app cuts its response mid-body: UR at both reporters and in both access log lines, not DC', async () => {
  const seen = await new Promise<string>((resolve) => {
    const q = httpRequest({ host: '127.0.0.1', port: pair.client.outboundPort, path: '/reset', headers: { host: 'web.default.svc.cluster.local' } }, (res) => {
      res.on('data', () => undefined);
      res.on('error', () => resolve('cut'));
      res.on('end', () => resolve('ended'));
    });
    q.on('error', () => resolve('cut'));
    q.end();
  });
  expect(seen).toBe('cut');
  for (const p of [pair.client, pair.server]) expect(flagsOf(await until(p, 'istio_requests_total', (s) => s.length > 0))).toEqual(['UR']);
  for (const lines of [pair.clientLines, pair.serverLines]) {
    expect(await lineOf(lines, (l) => l.path === '/reset')).toMatchObject({ response_code: 200, response_flags: 'UR', response_code_details: 'upstream-reset' });
  }
});

test('a client that leaves mid-body is still DC', async () => {
  await new Promise<void>((resolve) => {
    const q = httpRequest({ host: '127.0.0.1', port: pair.client.outboundPort, path: '/big?bytes=50000000', headers: { host: 'web.default.svc.cluster.local' } }, (res) => {
      res.once('data', () => {
        q.destroy();
        resolve();
      });
    });
    q.on('error', () => undefined);
    q.end();
  });
  const big = (l: Record<string, unknown>) => typeof l.path === 'string' && l.path.startsWith('/big');
  expect(await lineOf(pair.clientLines, big)).toMatchObject({ response_code: 200, response_flags: 'DC', response_code_details: 'downstream_remote_disconnect' });
  const dc = await until(pair.client, 'istio_requests_total', (s) => flagsOf(s).includes('DC'));
  expect(flagsOf(dc).sort()).toEqual(['DC', 'UR']);
});
