import type { RateLimitPolicy, TokenRate } from './model.js';
import { arr, fail, map, num, obj, optional, str, type Parser } from '../common/schema.js';

const SPIFFE = /^spiffe:\/\/[a-z0-9.-]+\/ns\/[a-z0-9-]+\/sa\/[a-z0-9.-]+$/;
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/;

/**
 * A bucket's shape: `requestsPerSecond` > 0 (fractions allowed: 0.5 = one request per two
 * seconds) and `burst`, the bucket's size, an integer >= 1 defaulting to ceil(requestsPerSecond)
 * (Consul's requestsMaxBurst default; at least one request must fit).
 */
const rateFields = {
  requestsPerSecond: num({ min: 0 }),
  burst: optional(num({ int: true, min: 1, max: 1_000_000_000 })),
};
function withBurst<T extends { requestsPerSecond: number; burst: number | undefined }>(r: T, path: string): T & TokenRate {
  if (!(r.requestsPerSecond > 0)) fail(`${path}.requestsPerSecond`, `expected a number > 0, got ${r.requestsPerSecond}`);
  return Object.freeze({ ...r, burst: r.burst ?? Math.max(1, Math.ceil(r.requestsPerSecond)) });
}
const tokenRate: Parser<TokenRate> = map(obj(rateFields), withBurst);

/**
 * One RateLimitPolicy as the inbound policy carries it (model.ts RateLimitPolicy): the
 * proxy's static `policy.rateLimits[]` and the discovery stream's inbound policy. At least
 * one limit is required; a client may be named in one override only.
 */
export const parseRateLimitPolicy: Parser<RateLimitPolicy> = map(
  obj({
    name: str({ pattern: /^\S+$/ }),
    ports: arr(num({ int: true, min: 1, max: 65535 }), { default: [] }),
    total: optional(tokenRate),
    identity: optional(tokenRate),
    overrides: arr(map(obj({ ...rateFields, clients: arr(str({ pattern: SPIFFE }), { min: 1 }) }), withBurst), { default: [] }),
    routes: arr(
      map(
        obj({
          ...rateFields,
          match: obj({ pathPrefix: str({ default: '/', pattern: /^\/\S*$/ }), method: map(str({ default: '', pattern: METHOD }), (m) => m.toUpperCase()) }),
        }),
        withBurst,
      ),
      { default: [] },
    ),
  }),
  (p, path) => {
    const at = (k: string) => (path ? `${path}.${k}` : k);
    if (!p.total && !p.identity && p.overrides.length === 0 && p.routes.length === 0) fail(path, 'at least one of total, identity, overrides and routes is required');
    const seen = new Set<string>();
    p.overrides.forEach((o, i) =>
      o.clients.forEach((c, j) => {
        if (seen.has(c)) fail(at(`overrides[${i}].clients[${j}]`), `${c} is already named by an earlier override`);
        seen.add(c);
      }),
    );
    return Object.freeze(Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined))) as unknown as RateLimitPolicy;
  },
);
