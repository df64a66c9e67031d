import { duration, fail, map, num, obj, optional, parseWith, type Parser } from '../../common/schema.js';
import type { CertifyRate } from './certify-limiter.js';

/**
 * The Certify limit's settings (certify-limiter.ts; docs/identity.md, "Certify limit per
 * workload"), as the embedded API takes them (`certifyLimit` of IdentityService,
 * `identity.certifyLimit` of ControlPlane.start) and as `wren control-plane`'s flags set them
 * (--certify-burst, --certify-refill, --certify-fleet-burst, --certify-fleet-refill). Checked
 * once at the edge, errors naming the field (`identity.certifyLimit.burst: ...`) or the flag:
 * a burst of 0 refused every Certify (INTERNAL: the limiter read a bucket it never made), and
 * a refill of 0 or NaN turned the limit off (the bucket full again at once), silently.
 * Absent fields: the defaults.
 */
export interface CertifyLimitSettings {
  /** Signatures one workload gets at once (default CERTIFY_BURST). */
  readonly burst?: number;
  /** One more per this long (default a quarter of --cert-ttl, at most a minute). */
  readonly refillMs?: number;
  /** The fleet bucket: a bootstrap token, or a service account's tokens bound to no pod (default 20, one a second). */
  readonly bootstrapToken?: Partial<CertifyRate>;
}

/** At most a day between signatures: a longer refill is a typo (a certificate lives 24 h by default). */
const MAX_REFILL_MS = 86_400_000;

const refill: Parser<number> = map(duration(), (n, path) =>
  n >= 1 && n <= MAX_REFILL_MS ? n : fail(path, `expected a duration from 1ms to 24h, got ${n} ms`));
const burst: Parser<number> = num({ int: true, min: 1, max: 100_000 });

/** Field parsers, also used one by one for the CLI flags (the flag is the path). */
export const CERTIFY_LIMIT_FIELDS = { burst, refillMs: refill } as const;

const parser: Parser<CertifyLimitSettings> = obj({
  burst: optional(burst),
  refillMs: optional(refill),
  bootstrapToken: optional(obj({ burst: optional(burst), refillMs: optional(refill) })),
});

/** `raw`: the certifyLimit object (undefined: every default); `path`: where it sits, for errors. */
export function parseCertifyLimit(raw: unknown, path: string): CertifyLimitSettings {
  return parseWith((r) => parser(r, path), raw);
}
