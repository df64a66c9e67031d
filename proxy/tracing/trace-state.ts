/**
 * W3C Trace Context `tracestate` (https://www.w3.org/TR/trace-context/#tracestate-header,
 * Level 1, section 3.3): what a sidecar forwards of the one a request came with.
 *
 * - The fields of the request combine into one list (section 3.3.1.1; RFC 9110 §5.3).
 * - A list is `list-member` separated by commas; spaces and tabs around a member are
 *   ignored, and empty members are allowed (3.3.1.1). There can be at most 32 list-members
 *   (3.3.1.1), each `key=value` of the grammar in 3.3.1.3 (a simple or a multi-tenant key;
 *   a value of up to 256 printable characters but `,` and `=`, not ending with a space),
 *   and only one entry per key (3.3.1.4, "Combined Header Value").
 * - A list that breaks any of those is discarded whole, as the W3C conformance suite
 *   expects of a participant (w3c/trace-context test/test.py: 33 members, a duplicated key,
 *   an illegal key or value: "expects the tracestate to be discarded"), and as
 *   OpenTelemetry Go's parser does; a list with no members is not sent on ("Vendors ...
 *   SHOULD avoid sending them").
 * - A valid list is forwarded as it came (fields, spaces and all: "If the value of the traceparent
 *   field wasn't changed before propagation, tracestate MUST NOT be modified", section 3.4), unless it is longer than
 *   MAX_TRACESTATE_CHARS: then it is truncated by whole entries as 3.3.1.5 ("tracestate
 *   Limits") says, entries longer than 128 characters first, then from the end of the list.
 */

/** At most 32 list-members in a list (section 3.3.1.1). */
export const MAX_TRACESTATE_MEMBERS = 32;
/**
 * The longest tracestate forwarded, commas and spaces included: "Vendors SHOULD propagate at
 * least 512 characters of a combined header" (3.3.1.5); this is 16 times that, and what
 * MESH_HEAD_HEADROOM (proxy/http/h1-server.ts) makes room for between sidecars.
 */
export const MAX_TRACESTATE_CHARS = 8192;
/** Entries longer than this go first when a list must be truncated (3.3.1.5). */
const LONG_ENTRY = 128;

// The members of the last list scanned, as offsets into it: one scan at a time (synchronous), no allocation per call.
const memberStart = new Int32Array(MAX_TRACESTATE_MEMBERS);
const memberEnd = new Int32Array(MAX_TRACESTATE_MEMBERS);
const keyEnd = new Int32Array(MAX_TRACESTATE_MEMBERS);

const SP = 0x20;
const HTAB = 0x09;
const COMMA = 0x2c;
const EQ = 0x3d;
const AT = 0x40;

const lcalpha = (c: number): boolean => c >= 0x61 && c <= 0x7a;
const digit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** lcalpha / DIGIT / "_" / "-" / "*" / "/" */
const keyChar = (c: number): boolean => lcalpha(c) || digit(c) || c === 0x5f || c === 0x2d || c === 0x2a || c === 0x2f;

/**
 * key = simple-key / multi-tenant-key (section 3.3.1.3.1):
 * simple-key = lcalpha 0*255( keychar ); multi-tenant-key = tenant-id "@" system-id,
 * tenant-id = ( lcalpha / DIGIT ) 0*240( keychar ), system-id = lcalpha 0*13( keychar ).
 */
function validKey(s: string, from: number, to: number): boolean {
  let at = -1;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === AT) {
      if (at >= 0) return false;
      at = i;
    } else if (!keyChar(c)) return false;
  }
  const first = s.charCodeAt(from);
  if (at < 0) return to - from >= 1 && to - from <= 256 && lcalpha(first);
  return at - from >= 1 && at - from <= 241 && (lcalpha(first) || digit(first)) && to - at - 1 >= 1 && to - at - 1 <= 14 && lcalpha(s.charCodeAt(at + 1));
}

/** value = 0*255( chr ) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (section 3.3.1.3.2). */
function validValue(s: string, from: number, to: number): boolean {
  if (to - from < 1 || to - from > 256 || s.charCodeAt(to - 1) === SP) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < SP || c > 0x7e || c === COMMA || c === EQ) return false;
  }
  return true;
}

function sameKey(s: string, a: number, b: number): boolean {
  const n = keyEnd[a] - memberStart[a];
  if (keyEnd[b] - memberStart[b] !== n) return false;
  for (let i = 0; i < n; i++) if (s.charCodeAt(memberStart[a] + i) !== s.charCodeAt(memberStart[b] + i)) return false;
  return true;
}

/** The number of list-members of `s` (their offsets in memberStart/keyEnd/memberEnd), or -1 when it is not a valid list. */
function scan(s: string): number {
  let n = 0;
  let i = 0;
  const len = s.length;
  for (;;) {
    while (i < len && (s.charCodeAt(i) === SP || s.charCodeAt(i) === HTAB)) i++;
    if (i === len) return n;
    if (s.charCodeAt(i) === COMMA) {
      // An empty or whitespace-only member (section 3.3.1.1: allowed).
      i++;
      continue;
    }
    const start = i;
    while (i < len && s.charCodeAt(i) !== EQ && s.charCodeAt(i) !== COMMA) i++;
    if (i === len || s.charCodeAt(i) !== EQ || !validKey(s, start, i)) return -1;
    const eq = i;
    i++;
    while (i < len && s.charCodeAt(i) !== COMMA) i++;
    // Spaces and tabs after a member are optional whitespace; leading spaces belong to the value.
    let end = i;
    while (end > eq + 1 && (s.charCodeAt(end - 1) === SP || s.charCodeAt(end - 1) === HTAB)) end--;
    if (!validValue(s, eq + 1, end) || n === MAX_TRACESTATE_MEMBERS) return -1;
    memberStart[n] = start;
    keyEnd[n] = eq;
    memberEnd[n] = end;
    for (let k = 0; k < n; k++) if (sameKey(s, k, n)) return -1;
    n++;
    if (i === len) return n;
    i++;
  }
}

/**
 * What to forward of a request's `tracestate` (one field or several): the header itself when
 * it is a valid list within MAX_TRACESTATE_CHARS (no allocation for one field), a shorter list
 * truncated by whole entries when it is longer, or undefined when it is to be dropped
 * (not a valid list, or no members).
 */
export function checkTraceState(ts: string | readonly string[]): string | readonly string[] | undefined {
  const s = typeof ts === 'string' ? ts : ts.join(',');
  const n = scan(s);
  if (n <= 0) return undefined;
  if (s.length <= MAX_TRACESTATE_CHARS) return ts;
  return truncate(s, n);
}

/**
 * The list within MAX_TRACESTATE_CHARS (section 3.3.1.5): without its optional whitespace and
 * empty members, then whole entries removed, those over 128 characters first, from the end.
 */
function truncate(s: string, n: number): string | undefined {
  const keep: boolean[] = new Array<boolean>(n).fill(true);
  // Joined without the optional whitespace and empty members.
  let size = n - 1;
  for (let k = 0; k < n; k++) size += memberEnd[k] - memberStart[k];
  for (let k = n - 1; k >= 0 && size > MAX_TRACESTATE_CHARS; k--) {
    const len = memberEnd[k] - memberStart[k];
    if (len <= LONG_ENTRY) continue;
    keep[k] = false;
    size -= len + 1;
  }
  // "Then entries SHOULD be removed starting from the end": never needed here, as 32 entries of
  // at most 128 characters make at most 4127, within MAX_TRACESTATE_CHARS.
  const out: string[] = [];
  for (let k = 0; k < n; k++) if (keep[k]) out.push(s.slice(memberStart[k], memberEnd[k]));
  return out.length > 0 ? out.join(',') : undefined;
}
