import type { Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { IdentityReport, TrustBundleState } from '../../contract/discovery.js';
import { identityReportOf, trustMismatch } from '../../contract/trust-anchors.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import { DEFAULT_RENEWAL_POLICY, retryDelay, type RenewalPolicy } from './renewal-schedule.js';

export interface TrustSyncOptions {
  readonly tls: TlsIdentity;
  /** Renew the certificate within delayMs (WorkloadIdentity.renewSoon); null when certificates come from files. */
  readonly renewSoon: ((delayMs: number, reason: string) => void) | null;
  readonly random: Random;
  readonly logger: Logger;
  readonly policy?: Partial<RenewalPolicy>;
}

/**
 * Keeps the proxy's certificate in line with the CA's trust state pushed on the
 * discovery stream (TrustBundleState): when the bundle differs from the one the CA hands
 * out, or the certificate ends at another root than the one the CA signs under, it asks
 * for a renewal — at a uniformly random point of the push's reissue_spread_ms, so a
 * fleet does not call Certify in the same second. Certify then answers with the new
 * bundle and a certificate from the new issuer, and TlsIdentity.rotate installs both.
 *
 * If a renewal did not fix the mismatch (Certify reached a replica that has not reloaded
 * its files yet), it asks again with the renewal backoff (1 s doubling to 60 s), not in a
 * loop. Certificates from files cannot be renewed: the mismatch is logged once per state.
 */
export class TrustSync {
  private pushed: TrustBundleState | null = null;
  /** A renewal was asked for and no rotation happened since. */
  private requested = false;
  private attempt = 0;
  private warned = '';
  private readonly policy: RenewalPolicy;

  constructor(private readonly o: TrustSyncOptions) {
    this.policy = { ...DEFAULT_RENEWAL_POLICY, ...(o.policy ?? {}) };
  }

  /** What the proxy trusts and presents now (sent as IdentityReport). */
  report(): IdentityReport {
    return identityReportOf(this.o.tls.material);
  }

  /** Why the proxy does not match the last pushed state; null when it does (or nothing was pushed). */
  mismatch(): string | null {
    return this.pushed ? trustMismatch(this.report(), this.pushed) : null;
  }

  /** A validated trust state from the control plane. */
  onPush(state: TrustBundleState): void {
    const changed = JSON.stringify(state) !== JSON.stringify(this.pushed);
    this.pushed = state;
    if (changed) this.attempt = 0;
    this.evaluate();
  }

  /** After every certificate rotation. */
  onRotate(): void {
    this.requested = false;
    this.evaluate();
  }

  private evaluate(): void {
    const why = this.mismatch();
    if (why === null) {
      this.attempt = 0;
      return;
    }
    if (this.requested) return;
    if (!this.o.renewSoon) {
      const key = JSON.stringify(this.pushed);
      if (this.warned !== key) this.o.logger.warn('the control plane trusts other roots than this proxy, whose certificates come from files: replace them', { code: 'TRUST_BUNDLE_STALE', detail: why });
      this.warned = key;
      return;
    }
    // The regular schedule still renews before expiry, so the retry needs no cap by the time left.
    const delay = this.attempt === 0 ? this.o.random() * (this.pushed?.reissueSpreadMs ?? 0) : retryDelay(this.attempt - 1, 0, this.o.random, this.policy);
    this.attempt++;
    this.requested = true;
    this.o.renewSoon(delay, why);
  }
}
