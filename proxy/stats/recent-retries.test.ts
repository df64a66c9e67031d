import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { ProxyRequest } from '../http/exchange.js';
import { RecentRetries } from './recent-retries.js';

const service = parseService({ name: 'api', namespace: 'shop', ports: [{ port: 8080 }] }, 'svc');
const req = (path: string, routeName?: string) =>
  ({ method: 'GET', path, route: { service, port: service.ports[0] }, ...(routeName ? { routeName } : {}) }) as unknown as ProxyRequest;

describe('RecentRetries', () => {
  test('keeps what the retry layer says, with the service, port, route, path without its query, and the age', () => {
    const clock = new FakeClock(1_000);
    const r = new RecentRetries(clock);
    r.record(req('/orders?token=secret', 'shop.api.rule-1'), 2, [{ outcome: 'http-503', retryOn: '5xx' }], 'success', '');
    clock.advance(250);
    expect(r.recent()).toEqual([
      { ageMs: 250, service: 'api.shop', port: 8080, route: 'shop.api.rule-1', method: 'GET', path: '/orders', attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success', stopped: '' },
    ]);
  });

  test('the path is the one the client sent, before a URLRewrite filter rewrote it', () => {
    const r = new RecentRetries(new FakeClock(0));
    r.record({ ...req('/v2/orders'), originalPath: '/orders?a=1' } as ProxyRequest, 2, [], 'success', '');
    expect(r.recent()[0].path).toBe('/orders');
  });

  test('bounded: the newest N, oldest first; those pushed out unreported are counted, reported ones are not', () => {
    const clock = new FakeClock(0);
    let signalled = 0;
    const r = new RecentRetries(clock, () => void signalled++, 3);
    for (let i = 0; i < 3; i++) r.record(req(`/${i}`), 2, [], 'success', '');
    expect(r.recent().map((x) => x.path)).toEqual(['/0', '/1', '/2']); // read: reported
    for (let i = 3; i < 5; i++) r.record(req(`/${i}`), 2, [], 'success', '');
    expect(r.dropped).toBe(0);
    for (let i = 5; i < 8; i++) r.record(req(`/${i}`), 2, [], 'success', '');
    // /2 (reported) went quietly; /3 and /4 were never reported.
    expect(r.dropped).toBe(2);
    expect(signalled).toBe(2);
    expect(r.recent().map((x) => x.path)).toEqual(['/5', '/6', '/7']);
  });
});
