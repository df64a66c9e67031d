import type { Headers } from '../http/headers.js';
import { header } from '../http/headers.js';

/**
 * The trace id of a W3C `traceparent` header (Trace Context, section 3.2):
 * `version-traceid-parentid-flags`, lower-case hex; version ff is invalid, an all-zero
 * trace or parent id is invalid, and version 00 has nothing after the flags (a later
 * version may append fields after a dash). Anything else: null. Read when the response
 * ends, after the trace layer: a missing or malformed header has been replaced by then
 * with the trace the sidecar started, which is what the line names (Envoy's %TRACE_ID%).
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-|$)/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);

export function traceIdOf(h: Headers): string | null {
  const v = header(h, 'traceparent');
  if (v === undefined || v.length < 55) return null;
  const m = TRACEPARENT.exec(v);
  if (!m || m[1] === 'ff' || (m[1] === '00' && v.length !== 55)) return null;
  if (m[2] === ZERO_TRACE || m[3] === ZERO_PARENT) return null;
  return m[2];
}
