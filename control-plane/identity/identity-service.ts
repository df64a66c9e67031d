import * as grpc from '@grpc/grpc-js';
import type { ControlPlaneTracing } from '../tracing.js';
import { DEFAULT_LEAF_TTL_MS, parseSpiffeId, PkiError, type PkiErrorCode, type SpiffeId } from '../../certs/index.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { loadIdentityProto, type CertifyRequest, type CertifyResponse } from '../../contract/identity.js';
import { CertifyLimiter, certifyRefillMs, CERTIFY_BURST, encodeCertifyState, parseCertifyState } from './certify-limiter.js';
import { parseCertifyLimit, type CertifyLimitSettings } from './certify-limit-settings.js';
import { ClientAnchors } from './client-anchors.js';
import { AuthError, type Authenticator, type Principal } from './authenticator.js';
import type { IdentityMetrics, RefusalReason } from './identity-metrics.js';
import { issuerSnapshot, type Issuer } from './issuer.js';
import { peerIdentityOf, type PeerIdentity } from './peer-certificate.js';
import { sourceAddress } from '../source-address.js';
import { LogThrottle } from '../../common/log-throttle.js';

export interface IdentityServiceOptions {
  readonly issuer: Issuer;
  /** null: every Certify is refused with FAILED_PRECONDITION (nothing can vouch for a token). */
  readonly authenticator: Authenticator | null;
  /** Default and maximum leaf lifetime (24 h, as Linkerd and Istio). */
  readonly certTtlMs?: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: IdentityMetrics;
  /** A SERVER span per Certify call (control-plane/tracing.ts), when a collector is configured. */
  readonly tracing?: Pick<ControlPlaneTracing, 'certifyStarted' | 'certified'>;
  /**
   * Renewal by certificate: a call whose TLS client certificate (verified against the
   * current bundle) proves the very identity it asks for is signed without a token, as
   * istiod's CA accepts a workload's own certificate for its CSR (Istio's
   * ClientCertAuthenticator). The certificate must chain to an anchor of the bundle, and be
   * within its validity, at the time of the call, not only at its connection's handshake
   * (client-anchors.ts): a certificate of a removed root, or one past its notAfter, renews
   * nothing, the call needs a token. Only meaningful over the control plane's own TLS,
   * which asks for client certificates (serving-identity.ts).
   */
  readonly acceptClientCertificates?: boolean;
  /**
   * Signatures per workload (certify-limiter.ts): a burst (default 5) and one more per
   * `refillMs` (default a quarter of the lifetime, at most a minute); per bootstrap token,
   * which a fleet may share, `bootstrapToken` (default a burst of 20, one more a second). Past
   * it a call is refused RESOURCE_EXHAUSTED with grpc-retry-pushback-ms, counted as reason
   * "rate_limited".
   */
  readonly certifyLimit?: CertifyLimitSettings;
}

/** gRPC's server pushback (gRFC A6): when the client may try again, in ms. */
export const RETRY_PUSHBACK_MD = 'grpc-retry-pushback-ms';

/** Shorter certificates would be renewed in a loop faster than a round trip is worth. */
export const MIN_CERT_TTL_MS = 1000;

export class CertifyError extends Error {
  constructor(
    readonly status: grpc.status,
    readonly reason: RefusalReason,
    message: string,
    /** Sent as grpc-retry-pushback-ms: when a retry can succeed (rate_limited). */
    readonly retryAfterMs: number | null = null,
    /** Counted but not logged: a workload's repeated rate_limited refusals are one log line until it is served again. */
    readonly quiet = false,
  ) {
    super(message);
    this.name = 'CertifyError';
  }
}

/** CA refusals (certs/errors.ts) -> gRPC status. Asking for someone else's identity is a permission problem; a broken CSR is an argument problem. */
function fromPkiError(e: PkiError): CertifyError {
  const denied: PkiErrorCode[] = ['CSR_IDENTITY_MISMATCH', 'TRUST_DOMAIN_MISMATCH'];
  const invalid: PkiErrorCode[] = ['CSR_MALFORMED', 'CSR_INVALID_SIGNATURE', 'CSR_MISSING_SAN', 'CSR_EXTRA_SANS', 'INVALID_TTL', 'INVALID_SPIFFE_ID'];
  if (denied.includes(e.code)) return new CertifyError(grpc.status.PERMISSION_DENIED, 'identity_mismatch', e.message);
  // Counted apart: a proxy with an unusual key, or someone probing what the CA verifies (certs/csr-key-policy.ts).
  if (e.code === 'CSR_WEAK_KEY' || e.code === 'CSR_UNSUPPORTED_KEY') return new CertifyError(grpc.status.INVALID_ARGUMENT, 'unsupported_key', e.message);
  if (e.code === 'CSR_TOO_LARGE') return new CertifyError(grpc.status.INVALID_ARGUMENT, 'csr_too_large', e.message);
  if (invalid.includes(e.code)) return new CertifyError(grpc.status.INVALID_ARGUMENT, 'invalid_csr', e.message);
  return new CertifyError(grpc.status.UNAVAILABLE, 'ca_error', `the CA cannot sign: ${e.message}`);
}

/**
 * The server side of wren.identity.v1 Identity/Certify (contract/identity.proto),
 * following Linkerd's identity service (pkg/identity/service.go): check the request's
 * shape, authenticate the token, require the proven identity to equal the requested
 * one, then let the CA sign (it checks the CSR's one SPIFFE URI SAN against the same
 * identity). The response carries leaf + intermediates, the whole trust bundle (so a
 * rotation that adds a root reaches proxies with their next certificate) and notAfter.
 */
export class IdentityService {
  private readonly ttlMs: number;
  private readonly anchors: ClientAnchors | null;
  readonly limiter: CertifyLimiter;
  /** The 'certificate refused' lines, at most 10 a second per reason. */
  private readonly refusalLog: LogThrottle;

  constructor(private readonly o: IdentityServiceOptions) {
    this.refusalLog = new LogThrottle(o.clock);
    this.anchors = o.acceptClientCertificates ? new ClientAnchors(o.issuer) : null;
    this.ttlMs = o.certTtlMs ?? DEFAULT_LEAF_TTL_MS;
    if (!(this.ttlMs >= MIN_CERT_TTL_MS) || this.ttlMs > o.issuer.ca.maxTtlMs)
      throw new PkiError('INVALID_TTL', `the certificate lifetime must be between ${MIN_CERT_TTL_MS} ms and ${o.issuer.ca.maxTtlMs} ms, got ${this.ttlMs}`);
    // Checked here (errors name certifyLimit.FIELD): a burst of 0 refused every call, a refill of 0 or NaN turned the limit off.
    const limit = parseCertifyLimit(o.certifyLimit, 'certifyLimit');
    this.limiter = new CertifyLimiter({
      burst: limit.burst ?? CERTIFY_BURST,
      refillMs: limit.refillMs ?? certifyRefillMs(this.ttlMs),
      ...(limit.bootstrapToken ? { sharedToken: limit.bootstrapToken } : {}),
      now: () => o.clock.now(),
      wallNow: () => o.clock.wallNow(),
    });
  }

  static definition(): grpc.ServiceDefinition {
    return loadIdentityProto().service;
  }

  get certTtlMs(): number {
    return this.ttlMs;
  }

  readonly implementation: grpc.UntypedServiceImplementation = {
    Certify: (call: grpc.ServerUnaryCall<CertifyRequest, CertifyResponse>, cb: grpc.sendUnaryData<CertifyResponse>) => {
      const auth = this.anchors ? peerIdentityOf(call, this.o.issuer.ca.trustDomain, this.anchors) : null;
      // Said once here: the token check that follows would only report the missing token.
      if (auth && !auth.ok && auth.reason === 'untrusted-client-certificate')
        this.o.logger.warn('client certificate not accepted for renewal; the call needs a token', { reason: auth.reason, detail: auth.detail, peer: call.getPeer() });
      const t = this.o.tracing;
      const span = t?.certifyStarted(call.getPeer());
      // grpc-js emits 'cancelled' when the client cancels, disconnects or its deadline passes:
      // the TokenReview made for this call is then given up instead of kept open for nobody.
      const gone = new AbortController();
      call.once('cancelled', () => gone.abort());
      if (call.cancelled) gone.abort();
      this.certify(call.request, call.getPeer(), auth?.ok ? auth.peer : null, gone.signal).then(
        (r) => {
          if (span) t!.certified(span, String(call.request?.identity ?? ''), grpc.status.OK);
          cb(null, r);
        },
        (e: CertifyError) => {
          if (span) t!.certified(span, String(call.request?.identity ?? ''), e.status, e.reason);
          let metadata: grpc.Metadata | undefined;
          if (e.retryAfterMs !== null) {
            metadata = new grpc.Metadata();
            metadata.set(RETRY_PUSHBACK_MD, String(e.retryAfterMs));
          }
          cb({ code: e.status, details: e.message, ...(metadata ? { metadata } : {}) });
        },
      );
    },
  };

  /**
   * Issues or throws CertifyError. `peer` is only for logs; `client`: the identity the call's
   * client certificate proves; `signal`: the call is gone, give up the token check.
   */
  async certify(req: CertifyRequest, peer = '', client: PeerIdentity | null = null, signal?: AbortSignal): Promise<CertifyResponse> {
    try {
      return await this.certifyOrThrow(req, peer, client, signal);
    } catch (e) {
      const err = e instanceof CertifyError ? e : new CertifyError(grpc.status.INTERNAL, 'ca_error', `internal error: ${(e as Error).message}`);
      this.o.metrics.refused.inc({ reason: err.reason });
      // The token is never logged; the requested identity and the reason are. At most 10
      // lines a second per reason: anyone who reaches the port can have calls refused at
      // will (junk tokens), and the metric above counts every one.
      const dropped = err.quiet ? null : this.refusalLog.admit(err.reason);
      if (dropped !== null)
        this.o.logger.warn('certificate refused', {
          identity: String(req?.identity ?? '').slice(0, 300), reason: err.reason, status: grpc.status[err.status], detail: err.message, peer, ...(dropped > 0 ? { suppressed: dropped } : {}),
        });
      throw err;
    }
  }

  private async certifyOrThrow(req: CertifyRequest, peer: string, client: PeerIdentity | null, signal: AbortSignal | undefined): Promise<CertifyResponse> {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(String(req.identity ?? ''));
    } catch (e) {
      throw new CertifyError(grpc.status.INVALID_ARGUMENT, 'invalid_request', (e as Error).message);
    }
    // One CA and bundle for the whole call: a reload (issuer-reloader.ts) during the token
    // review must not pair a leaf from the old issuer with the new bundle.
    const issuer = issuerSnapshot(this.o.issuer);
    const ca = issuer.ca;
    if (id.trustDomain !== ca.trustDomain)
      throw new CertifyError(grpc.status.PERMISSION_DENIED, 'identity_mismatch', `${req.identity} is outside trust domain "${ca.trustDomain}"`);
    if (!req.csrPem) throw new CertifyError(grpc.status.INVALID_ARGUMENT, 'invalid_request', 'csr_pem is empty');
    const asked = Number(req.requestedLifetimeMs ?? 0);
    if (!Number.isFinite(asked) || asked < 0 || (asked > 0 && asked < MIN_CERT_TTL_MS))
      throw new CertifyError(grpc.status.INVALID_ARGUMENT, 'invalid_request', `requested_lifetime_ms must be 0 (default) or at least ${MIN_CERT_TTL_MS}, got ${req.requestedLifetimeMs}`);
    const ttlMs = asked > 0 ? Math.min(asked, this.ttlMs) : this.ttlMs;

    // A renewal: the caller holds a current certificate of this identity (its key proved it in
    // the handshake). Current now, not only at that handshake: a connection outlives its
    // certificate (nothing ends it), and without this an expired certificate renewed itself
    // on a connection made before it expired, where the discovery stream on the same
    // connection is refused 'certificate-expired' (discovery-server.ts). Then the token decides.
    let renewal = client?.spiffeId === req.identity;
    if (renewal && client!.notAfterMs <= this.o.clock.wallNow()) {
      renewal = false;
      this.o.logger.warn('client certificate expired; the call needs a token', { identity: client!.spiffeId, serial: client!.serial, notAfter: new Date(client!.notAfterMs).toISOString(), peer });
    }
    const principal = renewal ? { namespace: client!.namespace, serviceAccount: client!.serviceAccount, via: 'client-certificate' } : await this.authenticate(req, signal, sourceAddress(peer));
    if (principal.namespace !== id.namespace || principal.serviceAccount !== id.serviceAccount)
      throw new CertifyError(
        grpc.status.PERMISSION_DENIED,
        'identity_mismatch',
        `the token proves ${principal.namespace}/${principal.serviceAccount}, but ${req.identity} was requested`,
      );
    // Charged before the CSR is even parsed: checking it is part of the work bounded.
    const carried = renewal ? parseCertifyState(client!.certifyState ?? undefined) : null;
    const key = this.limiter.keyOf(principal, renewal ? { serial: client!.serial, state: carried } : null, Buffer.isBuffer(req.token) ? req.token : Buffer.from(req.token ?? ''));
    const refusal = this.limiter.take(key, carried);
    if (refusal !== null)
      throw new CertifyError(
        grpc.status.RESOURCE_EXHAUSTED, 'rate_limited', `too many certificates for this workload (${key.split(' ')[0]}): try again in ${refusal.retryAfterMs} ms`,
        refusal.retryAfterMs, !refusal.first,
      );
    return this.sign(req, id, ttlMs, issuer, principal, peer, key);
  }

  private async authenticate(req: CertifyRequest, signal: AbortSignal | undefined, source: string | null): Promise<Principal> {
    if (!this.o.authenticator)
      throw new CertifyError(grpc.status.FAILED_PRECONDITION, 'no_authenticator', 'this control plane cannot check tokens (start it with --source kubernetes or --bootstrap-tokens FILE)');
    const token = Buffer.isBuffer(req.token) ? req.token : Buffer.from(req.token ?? '');
    try {
      return await this.o.authenticator.authenticate(token, signal, source);
    } catch (e) {
      if (e instanceof AuthError && e.kind === 'unauthenticated') throw new CertifyError(grpc.status.UNAUTHENTICATED, 'unauthenticated', e.message);
      // The TokenReview limits (token-review-authenticator.ts), each with its own reason so an alert can tell them apart.
      const limit = e instanceof AuthError ? e.limit : null;
      if (limit === 'timeout') throw new CertifyError(grpc.status.UNAVAILABLE, 'authenticator_timeout', (e as Error).message);
      if (limit === 'overloaded') throw new CertifyError(grpc.status.RESOURCE_EXHAUSTED, 'authenticator_overloaded', (e as Error).message);
      if (limit === 'source-overloaded') throw new CertifyError(grpc.status.RESOURCE_EXHAUSTED, 'authenticator_source_overloaded', (e as Error).message);
      if (limit === 'abandoned') throw new CertifyError(grpc.status.CANCELLED, 'cancelled', (e as Error).message);
      throw new CertifyError(grpc.status.UNAVAILABLE, 'authenticator_unavailable', (e as Error).message);
    }
  }

  private sign(req: CertifyRequest, id: SpiffeId, ttlMs: number, issuer: Issuer, principal: Principal, peer: string, key: string): CertifyResponse {
    const ca = issuer.ca;
    const t0 = this.o.clock.now();
    let issued;
    try {
      // The limit's state goes with the certificate, for whichever replica it renews at (certify-limiter.ts).
      issued = ca.issue(req.csrPem, { identity: id, ttlMs, now: new Date(this.o.clock.wallNow()), certifyState: encodeCertifyState(this.limiter.stateOf(key)) });
    } catch (e) {
      if (e instanceof PkiError) throw fromPkiError(e);
      throw e;
    }
    this.o.metrics.signDuration.observe((this.o.clock.now() - t0) / 1000);
    this.o.metrics.issued.inc();
    this.o.logger.info('certificate issued', {
      identity: issued.spiffeId, serial: issued.serial, notAfter: issued.notAfter.toISOString(), via: principal.via, ...(principal.pod ? { pod: principal.pod } : {}), peer,
    });
    return { certChainPem: [issued.certPem, ...issued.chainPems].join(''), trustBundlePem: issuer.trustBundlePem, validUntilMs: issued.notAfter.getTime() };
  }
}
