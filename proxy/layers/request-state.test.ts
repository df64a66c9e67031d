import { TriedKeys, ResilienceState, TryTimer, attachState, stateOf } from './request-state.js';
import { FakeClock } from '../../common/clock.js';
import { isExcluded, type Host } from '../balance/balancer.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';
import type { ProxyRequest } from '../http/exchange.js';

const host = (key: string): Host => ({ key }) as unknown as Host;

describe('TriedKeys', () => {
  it('is empty before the first attempt: excludes nothing, no last key', () => {
    const t = new TriedKeys();
    expect(t.size).toBe(0);
    expect(t.has('a')).toBe(false);
    expect(t.last()).toBeUndefined();
    expect(isExcluded(host('a'), { exclude: t })).toBe(false);
  });

  it('holds one key as a Set would, and a key added twice counts once', () => {
    const t = new TriedKeys();
    t.add('10.0.0.1:80');
    t.add('10.0.0.1:80');
    expect(t.size).toBe(1);
    expect(t.has('10.0.0.1:80')).toBe(true);
    expect(t.has('10.0.0.2:80')).toBe(false);
    expect(t.last()).toBe('10.0.0.1:80');
    expect(isExcluded(host('10.0.0.1:80'), { exclude: t })).toBe(true);
  });

  it('keeps every key of a retried request, in order, the last one last', () => {
    const t = new TriedKeys();
    for (const k of ['a', 'b', 'a', 'c']) t.add(k);
    expect(t.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((k) => t.has(k))).toEqual([true, true, true, false]);
    expect(t.last()).toBe('c');
  });
});

describe('ResilienceState', () => {
  it('rides on the request and survives a per-attempt copy', () => {
    const cluster = {} as ClusterHandle;
    const req = {} as ProxyRequest;
    const s = attachState(req, cluster);
    expect(s).toBeInstanceOf(ResilienceState);
    expect(s.cluster).toBe(cluster);
    expect([s.sent, s.deadlineAt, s.outcome, s.upstream, s.endpoint, s.tried.size]).toEqual([false, undefined, undefined, undefined, undefined, 0]);
    expect(stateOf({ ...req })).toBe(s);
  });

  // The HTTP/1.1 pool sends a request again after a refused mesh stream: a second wait for a
  // connection in one attempt. The timers ran through it (connected() had let them go).
  it("stops the attempt's per-try timers at every wait for a connection, and starts them from zero after each", () => {
    const clock = new FakeClock(0);
    const s = new ResilienceState({} as ClusterHandle);
    let fired = 0;
    s.newTry();
    s.addTryTimer(new TryTimer(clock, 100, () => void fired++));
    s.waitsForConnection();
    clock.advance(500);
    s.connected();
    clock.advance(50);
    // Refused: sent again, on a new connection that takes its time.
    s.waitsForConnection();
    clock.advance(500);
    expect(fired).toBe(0);
    s.connected();
    clock.advance(99);
    expect(fired).toBe(0);
    clock.advance(1);
    expect(fired).toBe(1);
  });
});
