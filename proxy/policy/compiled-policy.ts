import type { InboundPolicy, MtlsMode } from '../../contract/model.js';
import { compileAuthorizer, type Authorizer } from './authorizer.js';

/**
 * An InboundPolicy ready for the hot path: the mTLS mode per port as a Map and the
 * authorization policies compiled into matchers. Built once per policy update and
 * swapped atomically; connections and requests read the current one when they start,
 * so a change applies to the next request, also on connections already open.
 */
export class CompiledInboundPolicy {
  readonly authorizer: Authorizer;
  private readonly modes: ReadonlyMap<number, MtlsMode>;

  constructor(readonly policy: InboundPolicy) {
    this.authorizer = compileAuthorizer(policy.authorizationPolicies);
    this.modes = new Map(Object.entries(policy.portLevelMtls).map(([port, m]) => [Number(port), m.mode]));
  }

  /** The mode for a workload port (the port-level override, else the workload's mode); undefined port: the workload's mode. */
  modeFor(port: number | undefined): MtlsMode {
    return (port !== undefined ? this.modes.get(port) : undefined) ?? this.policy.mtls.mode;
  }

  /** One line for logs: `STRICT 9090=PERMISSIVE authz=2`. */
  summary(): string {
    const ports = [...this.modes].map(([p, m]) => `${p}=${m}`);
    return [this.policy.mtls.mode, ...ports, `authz=${this.policy.authorizationPolicies.length}`].join(' ');
  }
}
