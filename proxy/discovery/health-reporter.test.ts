import { FakeClock } from '../../common/clock.js';
import type { Ejection } from '../../contract/discovery.js';
import { HealthReporter } from './health-reporter.js';

const endpoint = (port: number, health: string, reason: string | null = null) => ({ key: `10.0.0.1:${port}`, address: '10.0.0.1', port, health, lastEjectionReason: reason });

describe('HealthReporter', () => {
  let clock: FakeClock;
  let sent: Ejection[][];
  let state: Record<string, unknown>;
  let r: HealthReporter;

  beforeEach(() => {
    clock = new FakeClock();
    sent = [];
    state = { 'web.shop:80': { endpoints: [endpoint(8080, 'healthy')] }, 'plain:1': { name: 'no health state' } };
    r = new HealthReporter({ clock, clusters: () => state, send: (l) => sent.push([...l]) });
  });

  const set = (...eps: ReturnType<typeof endpoint>[]) => {
    state = { ...state, 'web.shop:80': { endpoints: eps } };
    r.changed();
  };

  test('nothing to report is not sent; the first change goes out at once, with service, port, kind and reason', () => {
    r.changed();
    expect(sent).toEqual([]);
    set(endpoint(8080, 'ejected', 'consecutive-5xx'), endpoint(8081, 'health-check-failed'), endpoint(8082, 'half-open'), endpoint(8083, 'healthy'));
    expect(sent).toEqual([
      [
        { service: 'web.shop', servicePort: 80, address: '10.0.0.1', port: 8080, kind: 'outlier-ejection', reason: 'consecutive-5xx', ejectedForMs: 0 },
        { service: 'web.shop', servicePort: 80, address: '10.0.0.1', port: 8081, kind: 'health-check-failed', reason: '', ejectedForMs: 0 },
        { service: 'web.shop', servicePort: 80, address: '10.0.0.1', port: 8082, kind: 'breaker-open', reason: '', ejectedForMs: 0 },
      ],
    ]);
  });

  test('changes within the interval are coalesced into one report at its end; an unchanged list is not resent; clearing is reported', () => {
    set(endpoint(8080, 'ejected', 'consecutive-5xx'));
    expect(sent.length).toBe(1);
    clock.advance(200);
    set(endpoint(8080, 'ejected', 'consecutive-5xx'), endpoint(8081, 'ejected', 'success-rate'));
    clock.advance(100);
    set(endpoint(8080, 'healthy'), endpoint(8081, 'ejected', 'success-rate'));
    expect(sent.length).toBe(1); // rate limited
    clock.advance(700); // 1 s after the first report
    expect(sent.length).toBe(2);
    expect(sent[1]).toEqual([{ service: 'web.shop', servicePort: 80, address: '10.0.0.1', port: 8081, kind: 'outlier-ejection', reason: 'success-rate', ejectedForMs: 800 }]);
    clock.advance(5000);
    r.changed(); // nothing changed
    expect(sent.length).toBe(2);
    set(endpoint(8081, 'healthy'));
    expect(sent[2]).toEqual([]);
  });

  test('close() cancels a pending report', () => {
    set(endpoint(8080, 'ejected', 'consecutive-5xx'));
    clock.advance(10);
    set(endpoint(8080, 'healthy'));
    r.close();
    clock.advance(5000);
    expect(sent.length).toBe(1);
  });
});

describe('HealthReporter: connect failures', () => {
  const ep = (port: number, health: string, consecutiveConnectFailures: number) => ({ key: `10.0.0.1:${port}`, address: '10.0.0.1', port, health, lastEjectionReason: null, consecutiveConnectFailures });

  test('an endpoint is reported after `connectFailures` in a row (default 2), an ejection wins over it, and an answer clears it', () => {
    const clock = new FakeClock();
    const sent: Ejection[][] = [];
    let eps = [ep(8080, 'healthy', 1)];
    const r = new HealthReporter({ clock, clusters: () => ({ 'web.shop:80': { endpoints: eps } }), send: (l) => sent.push([...l]), minIntervalMs: 0 });
    r.changed();
    expect(sent).toEqual([]);
    eps = [ep(8080, 'healthy', 2)];
    r.changed();
    expect(sent).toEqual([[{ service: 'web.shop', servicePort: 80, address: '10.0.0.1', port: 8080, kind: 'connect-failure', reason: '', ejectedForMs: 0 }]]);
    eps = [{ ...ep(8080, 'ejected', 5), lastEjectionReason: 'consecutive-local-origin-failure' } as never];
    r.changed();
    expect(sent[1]).toEqual([expect.objectContaining({ kind: 'outlier-ejection', reason: 'consecutive-local-origin-failure' })]);
    eps = [ep(8080, 'healthy', 0)];
    r.changed();
    expect(sent[2]).toEqual([]);
  });

  test('connectFailures 0 turns them off; a higher threshold waits for more', () => {
    const sent: Ejection[][] = [];
    const eps = [ep(8080, 'healthy', 4)];
    new HealthReporter({ clock: new FakeClock(), clusters: () => ({ 'web.shop:80': { endpoints: eps } }), send: (l) => sent.push([...l]), connectFailures: 0 }).changed();
    new HealthReporter({ clock: new FakeClock(), clusters: () => ({ 'web.shop:80': { endpoints: eps } }), send: (l) => sent.push([...l]), connectFailures: 5 }).changed();
    expect(sent).toEqual([]);
    new HealthReporter({ clock: new FakeClock(), clusters: () => ({ 'web.shop:80': { endpoints: eps } }), send: (l) => sent.push([...l]), connectFailures: 4 }).changed();
    expect(sent).toEqual([[expect.objectContaining({ kind: 'connect-failure' })]]);
  });
});
