import type { RateLimitPolicy } from '../../contract/model.js';
import { parseRateLimitPolicy } from '../../contract/parse-ratelimit.js';
import { fail, obj, optional, str, type Parser } from '../../common/schema.js';
import { metadata, selector, type Labels } from './policy-objects.js';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION } from './k8s-objects.js';

/**
 * RateLimitPolicy (manifests/crds/ratelimitpolicy.yaml): inbound local rate limits for
 * the workloads its selector picks (every workload of its namespace without one), checked
 * strictly like the security CRDs (unknown fields are errors with their path). The spec
 * is the model's RateLimitPolicy without its name (contract/parse-ratelimit.ts validates
 * it, so the proxy's static config and the CRD refuse the same mistakes).
 */
export interface KRateLimitPolicy {
  readonly namespace: string;
  readonly selector: Labels | null;
  /** The model policy, named `namespace/name`. */
  readonly policy: RateLimitPolicy;
  readonly createdAt: string;
}

const envelope = obj(
  { apiVersion: optional(str({ oneOf: [`${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`] })), kind: optional(str()), metadata, spec: (raw) => raw },
  { allowUnknown: true },
);

export const parseRateLimitPolicyResource: Parser<KRateLimitPolicy> = (raw, path) => {
  const o = envelope(raw, path);
  const at = (k: string) => (path ? `${path}.${k}` : k);
  const spec = o.spec;
  if (spec === undefined || spec === null) return fail(at('spec'), 'is required');
  if (typeof spec !== 'object' || Array.isArray(spec)) return fail(at('spec'), 'expected an object');
  const { selector: rawSelector, ...limits } = spec as Record<string, unknown>;
  const sel = obj({ selector })({ selector: rawSelector }, at('spec')).selector;
  const name = `${o.metadata.namespace}/${o.metadata.name}`;
  const policy = parseRateLimitPolicy({ ...limits, name }, at('spec'));
  return Object.freeze({ namespace: o.metadata.namespace, selector: sel, policy, createdAt: o.metadata.creationTimestamp });
};
