import type { Headers } from '../http/headers.js';
import { checkTraceState } from './trace-state.js';

/**
 * Trace-context propagation formats a request can carry, as bits: W3C Trace Context
 * (`traceparent`/`tracestate`, https://www.w3.org/TR/trace-context/), B3 single header
 * (`b3`) and B3 multi-header (`x-b3-*`, https://github.com/openzipkin/b3-propagation).
 */
export const W3C = 1;
export const B3_SINGLE = 2;
export const B3_MULTI = 4;

/**
 * What a request says about its trace. `sampled` is undefined when the caller deferred the
 * decision (B3 ids without a sampled flag): the receiver decides. `traceId`/`spanId` are
 * '' when the caller sent a decision only (`b3: 0`, `x-b3-sampled: 1` alone).
 */
export interface IncomingContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean | undefined;
  readonly traceState: string | undefined;
  /** The formats the request arrived with (W3C | B3_SINGLE | B3_MULTI); W3C wins the ids. */
  readonly formats: number;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = '00000000000000000000000000000000';
const ZERO16 = '0000000000000000';

/**
 * True when the request carries any header of the formats: the one test the unsampled,
 * context-free hot path pays (four property loads, no allocation).
 */
export function hasContext(h: Headers): boolean {
  return h['traceparent'] !== undefined || h['b3'] !== undefined || h['x-b3-traceid'] !== undefined || h['x-b3-sampled'] !== undefined || h['x-b3-flags'] !== undefined;
}

/**
 * Reads the request's trace context: W3C first, then B3 single, then B3 multi (the order
 * OpenTelemetry's composite propagator and Envoy use). A malformed value of a format is
 * ignored as if absent (W3C Trace Context section 3.2.2.x: "vendors MUST ignore the
 * traceparent when ... invalid"); nothing here throws. Returns undefined when nothing usable
 * is present.
 */
export function extract(h: Headers): IncomingContext | undefined {
  let formats = 0;
  const tp = h['traceparent'];
  const w3c = typeof tp === 'string' ? parseTraceparent(tp) : undefined;
  if (w3c) formats |= W3C;
  const b3v = h['b3'];
  const single = typeof b3v === 'string' ? parseB3Single(b3v) : undefined;
  if (single) formats |= B3_SINGLE;
  const multi = parseB3Multi(h);
  if (multi) formats |= B3_MULTI;
  if (w3c) return { traceId: w3c.traceId, spanId: w3c.spanId, sampled: w3c.sampled, traceState: traceStateOf(h), formats };
  const b3 = single ?? multi;
  if (!b3) return undefined;
  return { traceId: b3.traceId, spanId: b3.spanId, sampled: b3.sampled, traceState: undefined, formats };
}

interface Parsed {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean | undefined;
}

/** A lower-case hex digit (HEXDIGLC): 0-9, a-f. */
const isHexLc = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);

/** Lower-case hex digits only (the W3C grammar's HEXDIGLC), from..to; a char-code loop: no regex, no allocation. */
function hexLc(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isHexLc(s.charCodeAt(i))) return false;
  return true;
}

/**
 * A valid traceparent (W3C Trace Context section 3.2.2): `vv-{32 hex}-{16 hex}-ff`, version ff
 * invalid, version 00 exactly these four fields, a later version possibly followed by
 * `-...` (section 3.2.4), no all-zero id.
 */
function validTraceparent(s: string): boolean {
  const n = s.length;
  if (n < 55 || s.charCodeAt(2) !== 45 || s.charCodeAt(35) !== 45 || s.charCodeAt(52) !== 45) return false;
  if (!hexLc(s, 0, 2) || !hexLc(s, 53, 55)) return false;
  if (s.charCodeAt(0) === 102 && s.charCodeAt(1) === 102) return false;
  if (s.charCodeAt(0) === 48 && s.charCodeAt(1) === 48 ? n !== 55 : n > 55 && s.charCodeAt(55) !== 45) return false;
  return hexId(s, 3, 35) && hexId(s, 36, 52);
}

/** Lower-case hex digits, from..to, not all zero (an all-zero trace or parent id is invalid): one pass, as every request's traceparent is checked. */
function hexId(s: string, from: number, to: number): boolean {
  let nonZero = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!isHexLc(c)) return false;
    nonZero |= c ^ 48;
  }
  return nonZero !== 0;
}

/** Bit 0 of the flags (sampled): the low bit of the last hex digit. */
function sampledBit(s: string): boolean {
  const c = s.charCodeAt(54);
  return ((c <= 57 ? c - 48 : c - 87) & 1) === 1;
}

/** `version-traceid-parentid-flags` (W3C Trace Context section 3.2). */
export function parseTraceparent(v: string): Parsed | undefined {
  const s = v.trim();
  if (!validTraceparent(s)) return undefined;
  return { traceId: s.slice(3, 35), spanId: s.slice(36, 52), sampled: sampledBit(s) };
}

/**
 * The common case of a request inside a trace that is not sampled: one valid traceparent
 * saying so, and any B3 header beside it agreeing with it (same ids, not sampled: what an
 * app forwarding both formats sends). Answered without building the context (char
 * comparisons, no allocation), and such a request passes on unchanged, `x-b3-parentspanid`
 * included, as Envoy and OpenTelemetry's propagators leave headers that carry the decision.
 */
export function notSampledW3c(h: Headers): boolean {
  const tp = h['traceparent'];
  if (typeof tp !== 'string' || !validTraceparent(tp) || sampledBit(tp)) return false;
  const b3 = h['b3'];
  return (b3 === undefined || (typeof b3 === 'string' && b3SingleAgrees(b3, tp, false))) && b3MultiAgrees(h, tp, false);
}

/**
 * A `b3` value that says what the traceparent `tp` (its ids) and `sampled` say: the decision
 * alone (`0`; `1` or `d`), or `{traceid}-{spanid}-{0|1|d}[-{parentspanid}]` with tp's ids (a
 * 64-bit trace id being tp's with its upper half zero, as extraction pads it). Anything
 * else, including upper-case or malformed ids, is rewritten from the context (B3 spec: ids
 * are lower-hex).
 */
export function b3SingleAgrees(v: string, tp: string, sampled: boolean): boolean {
  if (v.length === 1) return sampledState(v.charCodeAt(0), sampled);
  const t = traceIdAgrees(v, 0, v.indexOf('-'), tp);
  if (t < 0 || !sameChars(v, t + 1, tp, 36, 16) || v.charCodeAt(t + 17) !== 45 || !sampledState(v.charCodeAt(t + 18), sampled)) return false;
  const n = t + 19;
  return v.length === n || (v.length === n + 17 && v.charCodeAt(n) === 45 && hexLc(v, n + 1, n + 17));
}

/** A B3 sampling state (`0`, `1`, `d` debug) saying `sampled`. */
const sampledState = (c: number, sampled: boolean): boolean => (sampled ? c === 49 || c === 100 : c === 48);

/**
 * The `x-b3-*` headers, if any, say what the traceparent `tp` (its ids) and `sampled` say:
 * the decision `x-b3-sampled` (`0`/`false`; `1`/`true`, or debug `x-b3-flags: 1`), with no
 * other `x-b3-flags`, and either no ids or tp's trace and span ids. `x-b3-parentspanid` is the caller's and not
 * compared.
 */
export function b3MultiAgrees(h: Headers, tp: string, sampled: boolean): boolean {
  const tid = h['x-b3-traceid'];
  const sid = h['x-b3-spanid'];
  const smp = h['x-b3-sampled'];
  if (tid === undefined && sid === undefined && smp === undefined && h['x-b3-flags'] === undefined) return true;
  const flags = h['x-b3-flags'];
  // Debug (`x-b3-flags: 1`) is sampled: it agrees with a sampled context, alone or with x-b3-sampled: 1.
  if (sampled ? (flags !== undefined && flags !== '1') || (smp === undefined ? flags === undefined : smp !== '1' && smp !== 'true') : flags !== undefined || (smp !== '0' && smp !== 'false')) return false;
  if (tid === undefined && sid === undefined) return true;
  return typeof tid === 'string' && typeof sid === 'string' && traceIdAgrees(tid, 0, tid.length, tp) === tid.length
    && sid.length === 16 && sameChars(sid, 0, tp, 36, 16);
}

/**
 * s[from..to) is tp's trace id (32 lower-hex) or its lower half with the upper half zero (a
 * 64-bit B3 trace id): returns `to`, else -1.
 */
function traceIdAgrees(s: string, from: number, to: number, tp: string): number {
  const n = to - from;
  if (n === 32) return sameChars(s, from, tp, 3, 32) ? to : -1;
  if (n === 16) return sameChars(tp, 3, ZERO16, 0, 16) && sameChars(s, from, tp, 19, 16) ? to : -1;
  return -1;
}

/** A B3 trace id header naming the (padded, 128-bit) trace id. */
function sameTrace(v: string | string[] | undefined, traceId: string): boolean {
  return typeof v === 'string' && (v === traceId || (v.length === 16 && traceId.startsWith(ZERO16) && traceId.endsWith(v)));
}

function sameChars(a: string, aFrom: number, b: string, bFrom: number, n: number): boolean {
  if (a.length < aFrom + n) return false;
  for (let i = 0; i < n; i++) if (a.charCodeAt(aFrom + i) !== b.charCodeAt(bFrom + i)) return false;
  return true;
}

/** The request's tracestate as one list, when it is one to forward (trace-state.ts); undefined otherwise. */
function traceStateOf(h: Headers): string | undefined {
  const ts = h['tracestate'];
  const v = ts === undefined ? undefined : checkTraceState(ts);
  return v === undefined || typeof v === 'string' ? v : v.join(',');
}

/**
 * Leaves the request's `tracestate` as W3C Trace Context has it forwarded (trace-state.ts):
 * untouched when it is a valid list within the limits, truncated by whole entries when it
 * is longer, removed when it is not a valid list (33 members, a duplicated key, a malformed
 * member) or has no members.
 */
export function forwardTraceState(h: Headers): void {
  const ts = h['tracestate'];
  if (ts === undefined) return;
  const v = checkTraceState(ts);
  if (v === undefined) delete h['tracestate'];
  else if (v !== ts) h['tracestate'] = v as string;
}

/** `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or a decision alone (`0`, `1`, `d`). */
export function parseB3Single(v: string): Parsed | undefined {
  const s = v.trim().toLowerCase();
  if (s === '0' || s === '1' || s === 'd') return { traceId: '', spanId: '', sampled: s !== '0' };
  const parts = s.split('-');
  if (parts.length < 2 || parts.length > 4) return undefined;
  const traceId = b3TraceId(parts[0]);
  if (traceId === undefined || !HEX16.test(parts[1]) || parts[1] === ZERO16) return undefined;
  let sampled: boolean | undefined;
  if (parts.length >= 3) {
    if (parts[2] === '1' || parts[2] === 'd') sampled = true;
    else if (parts[2] === '0') sampled = false;
    else return undefined;
  }
  if (parts.length === 4 && !HEX16.test(parts[3])) return undefined;
  return { traceId, spanId: parts[1], sampled };
}

/** `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled` (`1`/`0`, or `true`/`false` from old tracers), `x-b3-flags: 1` (debug). */
export function parseB3Multi(h: Headers): Parsed | undefined {
  const tid = one(h['x-b3-traceid']);
  const sid = one(h['x-b3-spanid']);
  const flag = one(h['x-b3-flags']);
  const smp = one(h['x-b3-sampled'])?.trim().toLowerCase();
  let sampled: boolean | undefined;
  if (flag?.trim() === '1' || smp === '1' || smp === 'true') sampled = true;
  else if (smp === '0' || smp === 'false') sampled = false;
  if (tid === undefined && sid === undefined) return sampled === undefined ? undefined : { traceId: '', spanId: '', sampled };
  const traceId = tid === undefined ? undefined : b3TraceId(tid.trim().toLowerCase());
  const spanId = sid?.trim().toLowerCase();
  if (traceId === undefined || spanId === undefined || !HEX16.test(spanId) || spanId === ZERO16) {
    // Broken ids: keep a valid decision (Zipkin: "sampling state ... can be sent without ids").
    return sampled === undefined ? undefined : { traceId: '', spanId: '', sampled };
  }
  return { traceId, spanId, sampled };
}

/** A B3 trace id is 64 or 128 bits; a 64-bit one is left-padded to W3C's 128 (what OpenTelemetry's B3 propagator does). */
function b3TraceId(s: string): string | undefined {
  if (HEX32.test(s)) return s === ZERO32 ? undefined : s;
  if (HEX16.test(s)) return s === ZERO16 ? undefined : ZERO16 + s;
  return undefined;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
}

/**
 * Writes a context into the request forwarded: `traceparent` always (W3C for new traces,
 * what OpenTelemetry and Envoy's OpenTelemetry tracer inject), plus each B3 format the
 * request arrived with, so a caller that speaks only B3 sees its format continued.
 * `tracestate` is left as forwardTraceState made it (W3C section 3.5: a vendor with no entry
 * of its own passes it on as received). `parentSpanId` is the span `spanId` is the child of ('' for a
 * root span, or when `spanId` is the caller's own): B3 multi-header carries it (below).
 */
export function inject(h: Headers, traceId: string, spanId: string, sampled: boolean, formats: number, parentSpanId = ''): void {
  h['traceparent'] = `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
  if (formats & B3_SINGLE) h['b3'] = `${traceId}-${spanId}-${sampled ? '1' : '0'}`;
  if (formats & B3_MULTI) injectB3Multi(h, traceId, spanId, sampled, parentSpanId);
}

/**
 * The `x-b3-*` headers for a context. `x-b3-parentspanid` is the parent of the span named
 * by `x-b3-spanid` (B3 spec, https://github.com/openzipkin/b3-propagation: "may be present
 * on a child span and must be absent on the root span"): it stays while that span stays (a decision
 * added to the caller's own ids); when a new span replaces it, it names that span's parent
 * (`parentSpanId`, the span the request came in with, as Envoy's Zipkin tracer and Brave
 * inject it), and goes when there is none (a root span, or another context's span whose
 * parent is not known). `x-b3-flags` is superseded by `x-b3-sampled`.
 */
export function injectB3Multi(h: Headers, traceId: string, spanId: string, sampled: boolean, parentSpanId = ''): void {
  if (!(h['x-b3-spanid'] === spanId && sameTrace(h['x-b3-traceid'], traceId))) {
    if (parentSpanId !== '') h['x-b3-parentspanid'] = parentSpanId;
    else if (h['x-b3-parentspanid'] !== undefined) delete h['x-b3-parentspanid'];
  }
  h['x-b3-traceid'] = traceId;
  h['x-b3-spanid'] = spanId;
  h['x-b3-sampled'] = sampled ? '1' : '0';
  if (h['x-b3-flags'] !== undefined) delete h['x-b3-flags'];
}
