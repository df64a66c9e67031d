import { parseInboundPolicy } from './parse.js';
import { inboundPolicyFromJson, inboundPolicyToJson } from './discovery.js';
import type { ConfigError } from '../common/schema.js';

const A = 'spiffe://cluster.local/ns/demo/sa/a';
const parse = (rl: Record<string, unknown>) => parseInboundPolicy({ rateLimits: [{ name: 'demo/rl', ...rl }] }, 'policy');
const problem = (rl: Record<string, unknown>) => {
  try {
    parse(rl);
  } catch (e) {
    return (e as ConfigError).message;
  }
  return 'accepted';
};

describe('InboundPolicy rateLimits', () => {
  test('parses every limit, burst defaulting to ceil(requestsPerSecond), and survives the wire', () => {
    const p = parse({
      total: { requestsPerSecond: 100 }, identity: { requestsPerSecond: 0.5 }, overrides: [{ clients: [A], requestsPerSecond: 10, burst: 20 }],
      routes: [{ match: { pathPrefix: '/api', method: 'post' }, requestsPerSecond: 5 }],
    });
    expect(p.rateLimits).toEqual([{
      name: 'demo/rl', ports: [], total: { requestsPerSecond: 100, burst: 100 }, identity: { requestsPerSecond: 0.5, burst: 1 },
      overrides: [{ clients: [A], requestsPerSecond: 10, burst: 20 }], routes: [{ match: { pathPrefix: '/api', method: 'POST' }, requestsPerSecond: 5, burst: 5 }],
    }]);
    expect(inboundPolicyFromJson(inboundPolicyToJson(p), 'wire').rateLimits).toEqual(p.rateLimits);
    expect(parseInboundPolicy({}, '').rateLimits).toEqual([]);
  });

  test('bad limits are refused with their field path', () => {
    expect(problem({})).toBe('policy.rateLimits[0]: at least one of total, identity, overrides and routes is required');
    expect(problem({ total: { requestsPerSecond: 0 } })).toBe('policy.rateLimits[0].total.requestsPerSecond: expected a number > 0, got 0');
    expect(problem({ total: { requestsPerSecond: 1, burst: 0 } })).toMatch(/^policy.rateLimits\[0\].total.burst: /);
    expect(problem({ identity: { rps: 1 } })).toMatch(/^policy.rateLimits\[0\].identity.rps: unknown field/);
    expect(problem({ overrides: [{ clients: ['web'], requestsPerSecond: 1 }] })).toMatch(/^policy.rateLimits\[0\].overrides\[0\].clients\[0\]: /);
    expect(problem({ overrides: [{ clients: [A], requestsPerSecond: 1 }, { clients: [A], requestsPerSecond: 2 }] })).toMatch(/^policy.rateLimits\[0\].overrides\[1\].clients\[0\]: .* already named/);
    expect(problem({ ports: [0], total: { requestsPerSecond: 1 } })).toMatch(/^policy.rateLimits\[0\].ports\[0\]: /);
  });
});
