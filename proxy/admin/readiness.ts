import { Gauge, type Registry } from '../metrics/prom.js';

/**
 * Why the sidecar is or is not ready, as a stable code: the `reason` label of
 * `wren_proxy_ready`, next to the human reason /ready and /healthz/ready answer with.
 */
export type ReadinessCode = 'ready' | 'draining' | 'certificate-expired' | 'waiting-for-config' | 'workers-not-ready';

export interface Readiness {
  readonly ready: boolean;
  /** What /ready and /healthz/ready answer in their body. */
  readonly reason: string;
  readonly code: ReadinessCode;
}

/**
 * Not ready while the workload certificate's notAfter has passed (by the wall clock: the
 * peers judge it by theirs, as the clock's wallNow() says) and no renewed one has replaced
 * it. Every peer refuses such a certificate in the handshake (RFC 5280 §6.1.3 (a)(2)), so the
 * pod can take no mTLS traffic: it leaves its Services' endpoints until a renewal lands,
 * rather than have callers' requests fail against it (renewal keeps retrying meanwhile,
 * proxy/identity/workload-identity.ts). Linkerd's /ready likewise waits for the proxy's
 * identity to be certified (linkerd2-proxy#228); Istio's readiness does not look at the
 * certificate (istio/istio#52889 asks for it for istiod).
 */
export function certificateReadiness(notAfterMs: number, wallNowMs: number): Readiness | null {
  // notAfter itself is still within the validity period (RFC 5280 §4.1.2.5: "inclusive").
  if (wallNowMs <= notAfterMs) return null;
  return { ready: false, code: 'certificate-expired', reason: `workload certificate expired at ${new Date(notAfterMs).toISOString()} and no renewed one yet: mTLS peers refuse it` };
}

/**
 * `wren_proxy_ready{reason}`: 1 and `ready`, or 0 and the code of what keeps the sidecar
 * out of its Services, read when scraped (one series at a time), as Envoy's `server.state`
 * tells live from draining and pre-initializing.
 */
export function registerReadinessGauge(registry: Registry, readiness: () => Readiness): void {
  new Gauge({
    name: 'wren_proxy_ready',
    help: 'Whether /ready answers 200 (1) or 503 (0), by reason: ready, draining, certificate-expired, waiting-for-config, workers-not-ready',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect(this: Gauge<'reason'>) {
      const r = readiness();
      this.reset();
      this.set({ reason: r.code }, r.ready ? 1 : 0);
    },
  });
}
