import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { timeouts } from './timeouts.js';

/** The timeouts layer over a fake upstream on a fake clock: what a caller's gRPC deadline does before anything is sent. */
const service = parseService({ name: 'api', namespace: 'shop', ports: [{ port: 50051, protocol: 'grpc' }] }, 'svc');

function setup() {
  const sent: ProxyRequest[] = [];
  const svc = timeouts(new FakeClock(0))((req) => {
    sent.push(req);
    return Promise.resolve({ status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': '0' }, body: null, trailers: () => undefined } as ProxyResponse);
  });
  const call = (grpcTimeout: string) =>
    svc({
      method: 'POST', path: '/a.B/C', headers: { 'content-type': 'application/grpc', 'grpc-timeout': grpcTimeout }, body: null,
      signal: new AbortController().signal, route: { service, port: service.ports[0] },
    } as unknown as ProxyRequest);
  return { call, sent };
}

test('a grpc-timeout under 1 ms (0m, 0n, 1n, 500u) is spent on arrival: DEADLINE_EXCEEDED here, nothing sent upstream', async () => {
  const s = setup();
  for (const t of ['0m', '0n', '1n', '500u']) await expect(s.call(t)).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
  expect(s.sent).toEqual([]);
});

test('1 ms or more goes on to the layers below', async () => {
  const s = setup();
  expect((await s.call('1m')).status).toBe(200);
  expect((await s.call('2S')).status).toBe(200);
  expect(s.sent).toHaveLength(2);
});
