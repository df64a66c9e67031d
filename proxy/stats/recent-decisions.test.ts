import type { RecentDenial, RecentRetry } from '../../contract/discovery.js';
import { mergeDecisions } from './recent-decisions.js';

const denial = (ageMs: number, path: string): RecentDenial => ({ ageMs, policy: '', action: 'ALLOW', reason: 'no-allow-policy-matched', principal: '', method: 'GET', path, port: 80 });
const retry = (ageMs: number, path: string): RecentRetry => ({ ageMs, service: 'a.ns', port: 80, route: '', method: 'GET', path, attempts: 2, causes: [], result: 'success', stopped: '' });

describe('mergeDecisions (the main thread and its listener workers)', () => {
  test('every thread\'s denials and retries, oldest first; drops summed; a worker that did not answer is left out', () => {
    const m = mergeDecisions([
      { denials: [denial(50, '/main')], retries: [], droppedRetries: 1 },
      { denials: [denial(90, '/w0-old'), denial(10, '/w0-new')], retries: [retry(30, '/r0')], droppedRetries: 2 },
      null,
      { denials: [denial(40, '/w1')], retries: [retry(60, '/r1')], droppedRetries: 0 },
    ]);
    expect(m.denials.map((d) => d.path)).toEqual(['/w0-old', '/main', '/w1', '/w0-new']);
    expect(m.retries.map((r) => r.path)).toEqual(['/r1', '/r0']);
    expect(m.droppedRetries).toBe(3);
  });
});
