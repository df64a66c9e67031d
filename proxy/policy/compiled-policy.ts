import type { InboundPolicy, MtlsMode } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { compileAuthorizer, type Authorizer } from './authorizer.js';
import { JwtAuthenticator } from './jwt-authenticator.js';
import type { JwksRegistry } from './jwks-source.js';

/** What verifying JWTs needs beyond the policy: the shared key sources and the clock. */
export interface JwtDeps {
  readonly registry: JwksRegistry;
  readonly clock: Clock;
  readonly clockSkewSec: number;
  /** Verified tokens kept per policy version (0 = no cache). */
  readonly cacheSize: number;
  /** A verified token dropped from a full cache for a new one (wren_limit_exceeded_total{limit="jwt-cache-size"}). */
  readonly onCacheEvict?: () => void;
}

/**
 * An InboundPolicy ready for the hot path: the mTLS mode per port as a Map and the
 * authorization policies compiled into matchers. Built once per policy update and
 * swapped atomically; connections and requests read the current one when they start,
 * so a change applies to the next request, also on connections already open.
 */
export class CompiledInboundPolicy {
  readonly authorizer: Authorizer;
  /** null when no RequestAuthentication selects the workload: requests skip JWT work entirely. */
  readonly jwt: JwtAuthenticator | null;
  private readonly modes: ReadonlyMap<number, MtlsMode>;
  /**
   * Workload ports the control plane says a Service declares opaque (InboundPolicy.opaquePorts):
   * the inbound splices them unsniffed, as its static protocol.opaquePorts. The control plane's
   * word, never the peer's: a peer cannot make a port opaque to get raw HTTP past the sidecar.
   */
  readonly opaquePorts: ReadonlySet<number>;

  /**
   * `trustDomain`: the mesh's, the proxy's `identity.trustDomain` (default `cluster.local`),
   * which a policy principal written with trust domain `cluster.local` stands for, as in
   * Istio (match.ts withTrustDomains).
   */
  constructor(readonly policy: InboundPolicy, jwt?: JwtDeps, trustDomain?: string) {
    this.authorizer = compileAuthorizer(policy.authorizationPolicies, { trustDomain });
    if (policy.jwtRules.length > 0 && !jwt) throw new Error('an inbound policy with jwtRules needs JWT dependencies');
    this.jwt = policy.jwtRules.length > 0 && jwt ? new JwtAuthenticator(policy.jwtRules, jwt.registry, jwt.clock, jwt.clockSkewSec, jwt.cacheSize, jwt.onCacheEvict) : null;
    this.modes = new Map(Object.entries(policy.portLevelMtls).map(([port, m]) => [Number(port), m.mode]));
    this.opaquePorts = new Set(policy.opaquePorts);
  }

  /** The mode for a workload port (the port-level override, else the workload's mode); undefined port: the workload's mode. */
  modeFor(port: number | undefined): MtlsMode {
    return (port !== undefined ? this.modes.get(port) : undefined) ?? this.policy.mtls.mode;
  }

  /** One line for logs: `STRICT 9090=PERMISSIVE authz=2` (then `ratelimits=N`, `opaque=3306,6000` when there are any). */
  summary(): string {
    const ports = [...this.modes].map(([p, m]) => `${p}=${m}`);
    return [this.policy.mtls.mode, ...ports, `authz=${this.policy.authorizationPolicies.length}`, `jwt=${this.policy.jwtRules.length}`].concat(this.policy.rateLimits?.length ? [`ratelimits=${this.policy.rateLimits.length}`] : [])
      .concat(this.opaquePorts.size > 0 ? [`opaque=${[...this.opaquePorts].join(',')}`] : []).join(' ');
  }
}
