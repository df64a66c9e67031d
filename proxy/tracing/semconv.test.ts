import { SpanStatusCode } from '@opentelemetry/api';
import * as upstream from '@opentelemetry/semantic-conventions';
import * as ours from './semconv.js';

test('every attribute name the trace layer writes is the semantic conventions package\'s, and ERROR is the API\'s', () => {
  const { SPAN_STATUS_ERROR, ...attrs } = ours;
  expect(SPAN_STATUS_ERROR).toBe(SpanStatusCode.ERROR);
  expect(Object.keys(attrs).length).toBeGreaterThan(0);
  for (const [name, value] of Object.entries(attrs)) expect([name, value]).toEqual([name, (upstream as Record<string, unknown>)[name]]);
});
