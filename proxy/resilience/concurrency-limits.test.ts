import { DEFAULT_POLICY } from '../../contract/defaults.js';
import { ProxyError } from '../errors/proxy-error.js';
import { ConcurrencyLimits, type Admission, type LimitName } from './concurrency-limits.js';

describe('ConcurrencyLimits (Envoy thresholds)', () => {
  it('admits up to the limit, overflows with OVERFLOW, and frees on release (once)', () => {
    const overflows: LimitName[] = [];
    const limits = new ConcurrencyLimits({ ...DEFAULT_POLICY.circuitBreaker, maxRetries: 2 }, (l) => overflows.push(l));
    const a = limits.acquire('retries') as Admission;
    const b = limits.acquire('retries') as Admission;
    const c = limits.acquire('retries');
    expect(c).toBeInstanceOf(ProxyError);
    expect((c as ProxyError).code).toBe('OVERFLOW');
    expect(overflows).toEqual(['retries']);
    a.release();
    a.release(); // idempotent
    expect(limits.snapshot().retries).toEqual({ active: 1, max: 2 });
    expect(limits.acquire('retries')).not.toBeInstanceOf(ProxyError);
    expect(limits.acquire('retries')).toBeInstanceOf(ProxyError);
    b.release();
    expect(limits.acquire('requests')).not.toBeInstanceOf(ProxyError); // independent counters
  });

  it('applies new maxima to new admissions; 0 admits nothing', () => {
    const limits = new ConcurrencyLimits(DEFAULT_POLICY.circuitBreaker);
    const held = limits.acquire('connections') as Admission;
    limits.updatePolicy({ ...DEFAULT_POLICY.circuitBreaker, maxConnections: 1, maxPendingRequests: 0 });
    expect(limits.acquire('connections')).toBeInstanceOf(ProxyError);
    expect(limits.acquire('pending')).toBeInstanceOf(ProxyError);
    held.release();
    expect(limits.acquire('connections')).not.toBeInstanceOf(ProxyError);
  });
});
