import { Registry } from 'prom-client';
import { FakeClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import type { Ejection, EjectionKind } from '../../contract/discovery.js';
import type { Service } from '../../contract/model.js';
import { parseService } from '../../contract/parse.js';
import { EndpointWithdrawal } from './endpoint-withdrawal.js';
import { WithdrawalMetrics } from './withdrawal-metrics.js';
import { DEFAULT_WITHDRAWAL, parseWithdrawalSettings, type WithdrawalSettings } from './withdrawal-settings.js';

const svc = (ready: boolean[] = [true, true, true]): Map<string, Service> =>
  new Map([
    ['api.shop', parseService({ name: 'api', namespace: 'shop', ports: [{ port: 80, endpoints: ready.map((r, i) => ({ address: `10.0.0.${i + 1}`, port: 8080, ready: r })) }] }, 'test')],
  ]);
const ej = (i: number, kind: EjectionKind = 'outlier-ejection', ejectedForMs = 0): Ejection => ({
  service: 'api.shop', servicePort: 80, address: `10.0.0.${i}`, port: 8080, kind, reason: kind === 'outlier-ejection' ? 'consecutive-local-origin-failure' : '', ejectedForMs,
});

describe('EndpointWithdrawal', () => {
  let clock: FakeClock;
  let registry: Registry;
  let w: EndpointWithdrawal;
  let changes: string[][];

  const make = (settings: Partial<WithdrawalSettings> = {}, services = svc()) => {
    registry = new Registry();
    w = new EndpointWithdrawal({ settings: { ...DEFAULT_WITHDRAWAL, ...settings }, clock, logger: silentLogger, metrics: new WithdrawalMetrics(registry) });
    changes = [];
    w.onChange((s) => changes.push([...s]));
    w.setSource(services);
  };
  const out = () => [...w.withdrawnIn('api.shop')];
  const metric = async (name: string) => (await registry.metrics()).split('\n').filter((l) => l.startsWith(name)).join('\n');

  beforeEach(() => {
    clock = new FakeClock();
    make();
  });
  afterEach(() => w.close());

  test('one reporter is not enough, even on several streams; a second distinct reporter withdraws it', async () => {
    w.report(1, 'spiffe://td/ns/shop/sa/web shop/web-0', [ej(2)]);
    w.report(2, 'spiffe://td/ns/shop/sa/web shop/web-0', [ej(2)]); // the same proxy again
    expect(out()).toEqual([]);
    expect(changes).toEqual([]);
    w.report(3, 'spiffe://td/ns/shop/sa/web shop/web-1', [ej(2)]);
    expect(out()).toEqual(['80|10.0.0.2:8080']);
    expect(changes).toEqual([['api.shop']]);
    expect(await metric('wren_cp_endpoint_withdrawals_total')).toBe('wren_cp_endpoint_withdrawals_total{service="api.shop",reason="outlier-ejection"} 1');
    expect(await metric('wren_cp_withdrawn_endpoints')).toBe('wren_cp_withdrawn_endpoints 1');
    const d = w.debug();
    expect(d.withdrawn).toEqual([expect.objectContaining({ address: '10.0.0.2', port: 8080, reason: 'outlier-ejection', reporters: ['spiffe://td/ns/shop/sa/web shop/web-0', 'spiffe://td/ns/shop/sa/web shop/web-1'] })]);
    expect(d.decisions.map((x) => [x.action, x.reason])).toEqual([['withdrawn', 'outlier-ejection']]);
  });

  test('reports must agree within the window: an onset older than windowMs does not count', () => {
    w.report(1, 'a', [ej(2)]);
    clock.advance(10_001);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toEqual([]);
    // An old ejection resent after a reconnect (ejectedForMs) is old evidence too.
    w.report(3, 'c', [ej(2, 'outlier-ejection', 20_000)]);
    expect(out()).toEqual([]);
    w.report(4, 'd', [ej(2, 'health-check-failed', 500)]);
    expect(out()).toEqual(['80|10.0.0.2:8080']);
  });

  test('restored when the reports clear (fewer than minReporters still list it)', async () => {
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toHaveLength(1);
    clock.advance(5_000);
    w.report(1, 'a', []);
    expect(out()).toEqual([]);
    expect(changes).toEqual([['api.shop'], ['api.shop']]);
    expect(await metric('wren_cp_endpoint_restorations_total')).toBe('wren_cp_endpoint_restorations_total{service="api.shop",reason="cleared"} 1');
    expect(w.debug().decisions.map((x) => [x.action, x.reason, x.reporters])).toEqual([['withdrawn', 'outlier-ejection', ['a', 'b']], ['restored', 'cleared', ['b']]]);
    // A stream that ends takes its reports with it.
    w.report(1, 'a', [ej(3)]);
    w.report(2, 'b', [ej(2), ej(3)]);
    expect(out()).toEqual(['80|10.0.0.3:8080']);
    w.forget(1);
    expect(out()).toEqual([]);
  });

  test('restored after the TTL even if the reports stand; only reports newer than the restoration take it out again', async () => {
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    clock.advance(29_999);
    expect(out()).toHaveLength(1);
    clock.advance(1); // the timer fires at ttlMs
    expect(out()).toEqual([]);
    expect(await metric('wren_cp_endpoint_restorations_total')).toBe('wren_cp_endpoint_restorations_total{service="api.shop",reason="ttl"} 1');
    // The same standing reports, re-sent: still the old onsets, nothing happens.
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toEqual([]);
    // Two proxies that eject it afresh after the probation do.
    clock.advance(100);
    w.report(3, 'c', [ej(2)]);
    w.report(4, 'd', [ej(2)]);
    expect(out()).toEqual(['80|10.0.0.2:8080']);
  });

  test('a TTL shorter than the window: the evidence that withdrew it does not withdraw it again at the restoration', () => {
    make({ ttlMs: 3_000 });
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toHaveLength(1);
    clock.advance(3_000);
    expect(out()).toEqual([]);
    expect(w.debug().decisions.map((d) => [d.action, d.reason])).toEqual([['withdrawn', 'outlier-ejection'], ['restored', 'ttl']]);
  });

  test('never more than maxWithdrawnPercent of a port (rounded down): the rest is held, counted once', async () => {
    w.report(1, 'a', [ej(1), ej(2)]);
    w.report(2, 'b', [ej(1), ej(2)]);
    expect(out()).toEqual(['80|10.0.0.1:8080']); // 3 ready × 50 % = 1
    w.report(1, 'a', [ej(1), ej(2), ej(3)]);
    expect(await metric('wren_cp_endpoint_withdrawals_held_total')).toBe('wren_cp_endpoint_withdrawals_held_total{service="api.shop",reason="panic-threshold"} 1');
    expect(w.debug().held).toEqual(['api.shop|80|10.0.0.2|8080']);
    // With 0 % nothing is ever withdrawn; with one endpoint, 50 % is none.
    make({ maxWithdrawnPercent: 0 });
    w.report(1, 'a', [ej(1)]);
    w.report(2, 'b', [ej(1)]);
    expect(out()).toEqual([]);
    make({}, svc([true]));
    w.report(1, 'a', [ej(1)]);
    w.report(2, 'b', [ej(1)]);
    expect(out()).toEqual([]);
  });

  test('readiness is authoritative: an unready endpoint is never withdrawn, and a withdrawn one the source drops or unreadies is given up', async () => {
    make({}, svc([true, false, true]));
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toEqual([]);
    make({}, svc([true, true, true, true]));
    w.report(1, 'a', [ej(2), ej(3)]);
    w.report(2, 'b', [ej(2), ej(3)]);
    expect(out()).toEqual(['80|10.0.0.2:8080', '80|10.0.0.3:8080']); // 4 × 50 % = 2
    w.setSource(svc([true, false, true, true]));
    expect(out()).toEqual(['80|10.0.0.3:8080']);
    // The port shrinks to two ready endpoints: one may be out, the most recent goes back.
    w.setSource(svc([true, false, true]));
    expect(out()).toEqual(['80|10.0.0.3:8080']);
    w.setSource(svc([false, false, true]));
    expect(out()).toEqual([]);
    expect(w.debug().decisions.filter((d) => d.action === 'restored').map((d) => [d.address, d.reason])).toEqual([['10.0.0.2', 'gone'], ['10.0.0.3', 'panic-threshold']]);
  });

  test('minReporters is configurable, and disabled means reports are never acted on', () => {
    make({ minReporters: 3 });
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toEqual([]);
    w.report(3, 'c', [ej(2)]);
    expect(out()).toHaveLength(1);
    make({ enabled: false });
    w.report(1, 'a', [ej(2)]);
    w.report(2, 'b', [ej(2)]);
    expect(out()).toEqual([]);
  });
});

describe('parseWithdrawalSettings', () => {
  test('defaults, values and field-path errors', () => {
    expect(parseWithdrawalSettings(undefined)).toEqual({ enabled: true, minReporters: 2, windowMs: 10_000, ttlMs: 30_000, maxWithdrawnPercent: 50 });
    expect(parseWithdrawalSettings({ minReporters: 3, windowMs: '5s', ttlMs: '2m', maxWithdrawnPercent: 34, enabled: false })).toEqual({
      enabled: false, minReporters: 3, windowMs: 5_000, ttlMs: 120_000, maxWithdrawnPercent: 34,
    });
    expect(() => parseWithdrawalSettings({ minReporters: 0 })).toThrow('healthWithdrawal.minReporters: expected a number in 1..1000, got 0');
    expect(() => parseWithdrawalSettings({ ttlMs: '0s' })).toThrow('healthWithdrawal.ttlMs: expected a duration of at least 1ms');
    expect(() => parseWithdrawalSettings({ maxWithdrawnPercent: 101 })).toThrow('healthWithdrawal.maxWithdrawnPercent: expected a number in 0..100');
    expect(() => parseWithdrawalSettings({ windowMs: 'soon' })).toThrow('healthWithdrawal.windowMs: expected a duration');
    expect(() => parseWithdrawalSettings({ minReporter: 2 })).toThrow('healthWithdrawal.minReporter: unknown field');
  });
});
