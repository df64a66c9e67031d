/**
 * SPIFFE IDs for Kubernetes workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
 * the same shape Istio uses and Linkerd's SPIFFE mode emits.
 *
 * Validation follows the SPIFFE ID spec (github.com/spiffe/spiffe, standards/SPIFFE-ID.md):
 * scheme `spiffe` in lower case; trust domain only `[a-z0-9.-_]` (upper case is rejected, not
 * folded, because IDs are compared byte for byte); no userinfo, port, query or fragment; path
 * segments only `[a-zA-Z0-9.-_]`, never empty, `.` or `..`; no trailing slash; at most 2048 bytes.
 */
import { PkiError } from './errors.js';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const MAX_ID_LENGTH = 2048;
const MAX_TRUST_DOMAIN_LENGTH = 255;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[a-zA-Z0-9._-]+$/;
const PREFIX = 'spiffe://';

function invalid(input: string, why: string): never {
  throw new PkiError('INVALID_SPIFFE_ID', `invalid SPIFFE ID ${JSON.stringify(input.slice(0, 120))}: ${why}`);
}

/** Checks a trust domain name (`cluster.local`) and returns it unchanged. */
export function validateTrustDomain(td: string): string {
  if (td.length === 0) invalid(PREFIX + td, 'trust domain is empty');
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) invalid(PREFIX + td, `trust domain longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  if (!TRUST_DOMAIN.test(td))
    invalid(PREFIX + td, 'trust domain may only contain lower-case letters, digits, ".", "-" and "_" (no port, no userinfo)');
  return td;
}

function validateSegment(input: string, seg: string, what: string): void {
  if (seg.length === 0) invalid(input, `${what} path segment is empty`);
  if (seg === '.' || seg === '..') invalid(input, `${what} path segment may not be "." or ".."`);
  if (!SEGMENT.test(seg)) invalid(input, `${what} path segment ${JSON.stringify(seg)} may only contain letters, digits, ".", "-" and "_"`);
}

/** Splits any SPIFFE ID into trust domain and path segments (path may be empty: a trust-domain ID). */
export function parseSpiffeUri(uri: string): { trustDomain: string; segments: string[] } {
  if (typeof uri !== 'string') invalid(String(uri), 'not a string');
  if (uri.length > MAX_ID_LENGTH) invalid(uri, `longer than ${MAX_ID_LENGTH} bytes`);
  if (!uri.startsWith(PREFIX)) invalid(uri, 'must start with "spiffe://" (scheme in lower case)');
  if (uri.includes('?')) invalid(uri, 'query is not allowed');
  if (uri.includes('#')) invalid(uri, 'fragment is not allowed');
  const rest = uri.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (td.includes('@')) invalid(uri, 'userinfo is not allowed');
  if (td.includes(':')) invalid(uri, 'port is not allowed');
  validateTrustDomain(td);
  if (slash === -1) return { trustDomain: td, segments: [] };
  const path = rest.slice(slash + 1);
  if (path.length === 0 || path.endsWith('/')) invalid(uri, 'trailing "/" is not allowed');
  const segments = path.split('/');
  for (const s of segments) validateSegment(uri, s, 'a');
  return { trustDomain: td, segments };
}

/** `spiffe://td/ns/NS/sa/SA` → its parts; throws PkiError('INVALID_SPIFFE_ID') for anything else. */
export function parseSpiffeId(uri: string): SpiffeId {
  const { trustDomain, segments } = parseSpiffeUri(uri);
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa')
    invalid(uri, 'expected a workload ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>');
  return { trustDomain, namespace: segments[1], serviceAccount: segments[3] };
}

/** Formats (and validates) a workload SPIFFE ID. */
export function formatSpiffeId(id: SpiffeId): string {
  const uri = `${PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  // Guard against a namespace like "a/sa/b" producing a different but well-formed ID.
  if (id.namespace.includes('/') || id.serviceAccount.includes('/')) invalid(uri, 'namespace and service account may not contain "/"');
  parseSpiffeId(uri);
  return uri;
}

/** Accepts either form and returns the canonical string and the parts. */
export function toSpiffeId(id: SpiffeId | string): { uri: string; id: SpiffeId } {
  if (typeof id === 'string') {
    const parsed = parseSpiffeId(id);
    return { uri: formatSpiffeId(parsed), id: parsed };
  }
  return { uri: formatSpiffeId(id), id: { trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount } };
}

/** The trust domain's own SPIFFE ID (`spiffe://td`), carried by our CA certificates. */
export function trustDomainId(trustDomain: string): string {
  return PREFIX + validateTrustDomain(trustDomain);
}

export function isSpiffeId(uri: string): boolean {
  try {
    parseSpiffeId(uri);
    return true;
  } catch {
    return false;
  }
}
