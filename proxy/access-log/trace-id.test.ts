import { traceIdOf } from './trace-id.js';

test('the trace id of a valid W3C traceparent, null for anything else', () => {
  const id = '4bf92f3577b34da6a3ce929d0e0e4736';
  expect(traceIdOf({ traceparent: `00-${id}-00f067aa0ba902b7-01` })).toBe(id);
  // A later version may append fields (Trace Context section 3.2.4).
  expect(traceIdOf({ traceparent: `01-${id}-00f067aa0ba902b7-01-extra` })).toBe(id);
  for (const bad of [
    `00-${id}-00f067aa0ba902b7-01-extra`, // version 00 has nothing after the flags
    `ff-${id}-00f067aa0ba902b7-01`, // version ff is invalid
    `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
    `00-${id}-${'0'.repeat(16)}-01`,
    `00-${id.toUpperCase()}-00f067aa0ba902b7-01`,
    `00-${id}-00f067aa0ba902b7`,
    'garbage',
  ])
    expect(traceIdOf({ traceparent: bad })).toBeNull();
  expect(traceIdOf({})).toBeNull();
});
