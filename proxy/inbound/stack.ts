import type { HttpService } from '../http/exchange.js';
import { stack } from '../http/exchange.js';
import { errorsToResponse } from '../layers/errors-to-response.js';
import { recordMetrics } from '../layers/record-metrics.js';
import { traceRequests } from '../layers/trace.js';
import type { MeshTracer } from '../tracing/mesh-tracer.js';
import { requestId } from '../layers/request-id.js';
import { forwardedFor } from '../layers/forwarded-for.js';
import { normalizePath } from '../layers/normalize-path.js';
import { inboundTarget } from '../layers/inbound-target.js';
import { clientIdentity } from '../layers/client-identity.js';
import { authorize } from '../layers/authorize.js';
import { strictMtls } from '../layers/strict-mtls.js';
import { requestAuthn } from '../layers/request-authn.js';
import { rateLimit } from '../layers/rate-limit.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import { deliverToApp } from './deliver-to-app.js';
import { plaintextRequest } from './plaintext-request.js';
import { accessLog } from '../layers/access-log.js';
import type { AccessLog } from '../access-log/access-log.js';
import type { AppConnector } from './app-connector.js';
import type { CallerCounts } from '../net/shared-admission.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';
import type { OpenTunnels } from '../policy/open-tunnels.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';

export interface InboundStackDeps {
  /** The local app's connectors (h2c sessions, HTTP/1.1 pool), shared by both inbound stacks. */
  readonly app: AppConnector;
  readonly reservedPorts: ReadonlySet<number>;
  readonly selfIdentity: () => string;
  /** Requests one caller may have open to the app (limits.maxStreamsPerCaller). */
  readonly maxStreamsPerCaller: number;
  /** The sidecar's count of each caller's requests open to the app (every listener worker's). */
  readonly callerCounts: CallerCounts;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The workload's current inbound policy (read per request). */
  readonly policy: () => CompiledInboundPolicy;
  readonly policyTelemetry: PolicyTelemetry;
  /** The listener's open tunnels, re-authorized on each policy change: upgrades the app switches join them. */
  readonly tunnels: OpenTunnels;
  /** The workload's RateLimitPolicies' buckets (shared by both inbound stacks). */
  readonly rateLimiter: RateLimiter;
  /**
   * Requests that arrived in plaintext on a PERMISSIVE port: the caller has no identity,
   * mesh headers it sent are dropped (it cannot pick the target port or forge the
   * client-certificate header) and metrics say `connection_security_policy="none"`.
   */
  readonly plaintext?: boolean;
  /** The access log (docs/observability.md); absent: none. */
  readonly accessLog?: AccessLog;
  /** SERVER spans and trace-context propagation to the app (docs/observability.md, Tracing); absent: none. */
  readonly tracer?: MeshTracer;
}

/** The inbound HTTP pipeline, top (first to see a request) to bottom. */
export function inboundStack(d: InboundStackDeps): HttpService {
  return stack(
    [
      // The access log on top: it sees the response the client gets (a 403 RBAC too).
      ...(d.accessLog ? [accessLog(d.accessLog, 'inbound', d.app.address, () => d.policy().jwt?.tokenParams)] : []),
      // Metrics above errors: a synthetic error response (403 RBAC...) is counted too.
      // Only an mTLS peer (a sidecar) can mark a request as a health check.
      recordMetrics(d.metrics, 'inbound', d.clock, d.plaintext ? () => 'none' : () => 'mutual_tls', !d.plaintext),
      ...(d.tracer ? [traceRequests(d.tracer, 'server', d.clock)] : []),
      errorsToResponse(d.logger, 'inbound'),
      ...(d.plaintext ? [plaintextRequest()] : []),
      // Before anything reads the path: authorization judges the path the app will get.
      normalizePath(),
      inboundTarget(d.reservedPorts),
      // Plaintext only: the port may have become STRICT since the connection was accepted.
      ...(d.plaintext ? [strictMtls(d.policy, d.policyTelemetry)] : []),
      // The JWT first: authorize reads the request principal and claims it sets.
      requestAuthn(d.policy, d.policyTelemetry),
      authorize(d.policy, d.policyTelemetry, d.tunnels, d.plaintext === true),
      // After authorization: a refused caller takes no token.
      rateLimit(d.rateLimiter, d.metrics.rateLimited),
      requestId(),
      forwardedFor(),
      clientIdentity(d.selfIdentity),
    ],
    deliverToApp(d.app, {
      maxStreamsPerCaller: d.maxStreamsPerCaller,
      counts: d.callerCounts,
      onLimit: () => d.metrics.limits.inc({ direction: 'inbound', limit: 'max-streams-per-caller' }),
    }),
  );
}
