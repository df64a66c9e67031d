import { parseTrafficPolicy } from './parse.js';
import { policyToJson } from './discovery.js';
import { ConfigError } from '../common/schema.js';

const parse = (fault: unknown) => parseTrafficPolicy({ fault }, 'spec.policy');
const problem = (fault: unknown) => {
  try {
    parse(fault);
  } catch (e) {
    return (e as ConfigError).message;
  }
  return 'accepted';
};

describe('TrafficPolicy fault', () => {
  test('parses delay and abort with defaults (percentage 100), and survives the wire (policy_json) unchanged', () => {
    const p = parse({ delay: { fixedDelay: '2s', percentage: 10 }, abort: { grpcStatus: 'UNAVAILABLE' } });
    expect(p.fault).toEqual({ delay: { fixedDelay: 2000, percentage: 10 }, abort: { grpcStatus: 'UNAVAILABLE', percentage: 100 } });
    expect(parseTrafficPolicy(JSON.parse(policyToJson(p)), 'wire').fault).toEqual(p.fault);
    expect(parseTrafficPolicy({}, '').fault).toBeUndefined();
  });

  test('bad faults are refused with their field path', () => {
    expect(problem({})).toBe('spec.policy.fault: delay or abort is required');
    expect(problem({ abort: { percentage: 5 } })).toBe('spec.policy.fault.abort: exactly one of httpStatus and grpcStatus is required');
    expect(problem({ abort: { httpStatus: 503, grpcStatus: 'UNAVAILABLE' } })).toMatch(/^spec.policy.fault.abort: exactly one/);
    expect(problem({ abort: { httpStatus: 700 } })).toMatch(/^spec.policy.fault.abort.httpStatus: /);
    expect(problem({ abort: { grpcStatus: 'OK' } })).toMatch(/^spec.policy.fault.abort.grpcStatus: expected one of/);
    expect(problem({ delay: { percentage: 5 } })).toBe('spec.policy.fault.delay.fixedDelay: is required');
    expect(problem({ delay: { fixedDelay: 'soon' } })).toMatch(/^spec.policy.fault.delay.fixedDelay: expected a duration/);
    expect(problem({ delay: { fixedDelay: '1s', percentage: 101 } })).toMatch(/^spec.policy.fault.delay.percentage: /);
    expect(problem({ abort: { httpStatus: 503 }, match: { pathPrefix: 'api' } })).toMatch(/^spec.policy.fault.match.pathPrefix: /);
    expect(problem({ abort: { httpStatus: 503 }, match: { headers: { 'bad name': 'x' } } })).toBe('spec.policy.fault.match.headers.bad name: is not a valid header name');
    expect(problem({ abort: { httpStatus: 503 }, retry: true })).toMatch(/^spec.policy.fault.retry: unknown field/);
  });
});
