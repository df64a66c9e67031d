import { loadDiscoveryProto, type DiscoveryResponse, type TrustBundleState } from '../../contract/discovery.js';
import { issuerSnapshot, type Issuer } from '../identity/issuer.js';
import { issuerTrust } from '../identity/trust-state.js';

/** One generation of the CA's trust state, ready to ride on discovery responses. */
export interface TrustPushState {
  /** Changes when the anchors or the signing root change (what a subscriber ACKs). */
  readonly key: string;
  readonly generation: number;
  readonly wire: TrustBundleState;
  /** A DiscoveryResponse holding only field 9, appended to shared response bytes (see encodePolicySuffix). */
  readonly suffix: Buffer;
}

export interface TrustPushOptions {
  /** Certify calls per second a fleet's reissue is spread to (default 200, under half of one replica's ~450/s; docs/identity.md "Measured"). */
  readonly reissueRatePerSec?: number;
  /** The shortest spread (default 1 s). */
  readonly minSpreadMs?: number;
}

/**
 * The trust state the discovery server pushes (DiscoveryResponse.trust_bundle): the
 * fingerprints of the anchors the CA hands out and of the root its issuer chains to. A
 * proxy that holds another bundle, or a certificate ending at another root, renews at
 * once instead of ~70% of a lifetime later, so a rotation step takes seconds.
 *
 * reissue_spread_ms asks the fleet to spread those renewals: one replica signs ~450
 * certificates/s, so N subscribers are spread over N/rate seconds (at least minSpreadMs).
 * The spread is fixed when a generation is made, so every subscriber of a generation sees
 * the same value and a subscriber joining later does not change the key.
 */
export class TrustPush {
  private state: TrustPushState | null = null;
  private snapshot: Issuer | null = null;
  private generation = 0;

  constructor(
    private readonly issuer: Issuer,
    private readonly subscriberCount: () => number,
    private readonly o: TrustPushOptions = {},
  ) {}

  /** Cheap on the hot path: recomputed only when the issuer's snapshot object changes (a reload). */
  current(): TrustPushState {
    const snap = issuerSnapshot(this.issuer);
    if (this.state && snap === this.snapshot) return this.state;
    this.snapshot = snap;
    const t = issuerTrust(snap);
    if (this.state?.key === t.key) return this.state;
    const rate = this.o.reissueRatePerSec ?? 200;
    const wire: TrustBundleState = {
      trustAnchorFingerprints: [...t.trustAnchorFingerprints],
      signingRootFingerprint: t.signingRootFingerprint,
      reissueSpreadMs: Math.max(this.o.minSpreadMs ?? 1000, Math.ceil((this.subscriberCount() / rate) * 1000)),
    };
    const suffix = loadDiscoveryProto().encodeResponse({ trustBundle: wire } as DiscoveryResponse);
    this.state = { key: t.key, generation: ++this.generation, wire, suffix };
    return this.state;
  }

  /** Runs `fn` after the issuer changed in a way subscribers must hear about. */
  onChange(fn: (state: TrustPushState, previous: TrustPushState | null) => void): () => void {
    return (
      this.issuer.onChange?.(() => {
        const prev = this.state;
        const next = this.current();
        if (next !== prev) fn(next, prev);
      }) ?? (() => undefined)
    );
  }
}
