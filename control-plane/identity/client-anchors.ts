import { X509Certificate } from 'node:crypto';
import { splitPemCerts } from '../../certs/index.js';
import { issuerSnapshot, type Issuer } from './issuer.js';

const signedBy = (child: X509Certificate, parent: X509Certificate): boolean => {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
};

/**
 * Which CURRENT trust anchor a client certificate chains to (issue #14 section 1).
 *
 * node:tls verifies a client chain once, at the handshake, against the `ca` of that
 * moment, and grpc-js's getAuthContext() keeps reporting that verdict for every later
 * stream of the connection. After the bundle drops a root, a connection authenticated
 * under it would keep opening streams and renewing certificates. So the control plane
 * re-derives the anchor itself, per stream and per Certify, against the bundle it holds
 * now, and ends streams whose anchor leaves the bundle.
 *
 * grpc-js hands out only the leaf (not the chain the client sent), so the path is walked
 * through the issuer certificates this control plane has signed with since it started
 * (every issuer and intermediate of every issuer snapshot, issuer-reloader.ts): a leaf
 * of a previous intermediate still finds its root while that root is in the bundle. The
 * default generated CA and `wren certs ca` sign leaves with the root itself (no hop).
 * A leaf from an intermediate this process never loaded (another replica's newer one
 * before this one reloads, or an older one after a restart) does not chain here and is
 * refused; docs/security.md says so. The pool only grows on an issuer swap (a few
 * certificates per rotation).
 */
export class ClientAnchors {
  private readonly known = new Map<string, X509Certificate>();
  private snap: Issuer | null = null;
  private anchors: readonly X509Certificate[] = [];
  private readonly unsubscribe: () => void;

  constructor(private readonly issuer: Issuer) {
    this.sync();
    // Record every snapshot, even one replaced before the next call looks.
    this.unsubscribe = issuer.onChange?.(() => this.sync()) ?? (() => undefined);
  }

  /** SHA-256 fingerprint (contract/trust-anchors.ts form) of the current anchor `leaf` chains to, or null when none. */
  anchorOf(leaf: X509Certificate): string | null {
    this.sync();
    const seen = new Set<string>();
    let cur = leaf;
    for (let hops = 0; hops <= this.known.size; hops++) {
      const root = this.anchors.find((a) => a.fingerprint256 === cur.fingerprint256 || signedBy(cur, a));
      if (root) return root.fingerprint256;
      seen.add(cur.fingerprint256);
      let next: X509Certificate | undefined;
      for (const k of this.known.values())
        if (!seen.has(k.fingerprint256) && signedBy(cur, k)) {
          next = k;
          break;
        }
      if (!next) return null;
      cur = next;
    }
    return null;
  }

  close(): void {
    this.unsubscribe();
  }

  private sync(): void {
    const s = issuerSnapshot(this.issuer);
    if (s === this.snap) return;
    this.snap = s;
    this.anchors = splitPemCerts(s.trustBundlePem).map((p) => new X509Certificate(p));
    for (const p of [s.ca.certPem, ...s.ca.issuedChainPems]) {
      const c = new X509Certificate(p);
      this.known.set(c.fingerprint256, c);
    }
  }
}
