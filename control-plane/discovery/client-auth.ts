import type { Subscribe } from '../../contract/discovery.js';
import { isCertifiedPod } from '../identity/certify-limiter.js';
import type { PeerIdentity } from '../identity/peer-certificate.js';
import type { PolicyView } from '../store/mesh-store.js';

/** Why a Subscribe is refused although its certificate is good (PERMISSION_DENIED). Also a metric label. */
export type SubscribeRefusal = 'identity-mismatch' | 'namespace-mismatch' | 'unknown-pod' | 'pod-mismatch' | 'pod-not-certified' | 'labels-mismatch';

export interface Refused {
  readonly reason: SubscribeRefusal;
  readonly detail: string;
}

/**
 * What a Subscribe may claim, given the identity its stream's client certificate proves.
 *
 * The identity it names must be the certificate's, and so must the namespace. Then the
 * pod: where the source knows meshed pods (Kubernetes: every one; a manifest directory:
 * the Pods it lists) the pod named must be one of them and run as the certificate's
 * service account, and any labels the proxy sends must be that pod's own (the Pod's labels
 * are what inbound policy is resolved from anyway: workload-policy.ts). This is the
 * binding Istio makes between an xDS connection's certificate and the Pod its node ID
 * names (pilot's ProxyNeedsAuthz / checkConnectionIdentity). With `podsAuthoritative`
 * (the Kubernetes source) a pod the source does not know is refused; the proxy retries
 * and gets through once the watch has seen its Pod. In a directory mesh a pod it does
 * not list is let through with the labels it claims, bounded to its own namespace by the
 * certificate (docs/security.md, "What a proxy can learn").
 *
 * A certificate bound to a pod (Certify signed it for a token bound to a pod, or renewed it
 * from one: its Certify key, certify-limiter.ts certifiedPod, digests that pod's namespace,
 * name and UID) may name only that pod: `certified` is that key, checked against the pod named
 * and the UID the source knows for it (isCertifiedPod), refused `pod-not-certified`
 * otherwise. A SPIFFE ID names a service account, so the checks above let one pod's sidecar
 * name any sibling pod of its service account, get that pod's inbound policy, and have its
 * stats and health reports filed under it (until 2026-12-07, adv59). Istio binds the
 * connection to the Pod its node ID names the same way, through the pod its token is bound to
 * (pilot's checkConnectionIdentity). Certificates bound to no pod (a bootstrap token's,
 * `wren certs`) say nothing of which pod holds them: those are bounded as above.
 *
 * `view` must be a synced one (the discovery server checks on its first push).
 */
export function checkIdentityClaim(peer: PeerIdentity, sub: Subscribe): Refused | null {
  const id = sub.identity;
  if (id.spiffeId !== peer.spiffeId) return { reason: 'identity-mismatch', detail: `the client certificate is ${peer.spiffeId}, the subscribe claims ${String(id.spiffeId).slice(0, 300)}` };
  if (id.namespace !== peer.namespace) return { reason: 'namespace-mismatch', detail: `the client certificate is for namespace ${peer.namespace}, the subscribe names ${String(id.namespace).slice(0, 100)}` };
  return null;
}

export interface CertifiedPodKey {
  /** certifiedPod of the stream's certificate. */
  readonly key: string;
  /** The CA's keyed digest (a pod key made without a UID under it: certify-limiter.ts podKey). */
  readonly keyedDigest: (data: string) => string;
}

export function checkPodClaim(peer: PeerIdentity, sub: Subscribe, view: PolicyView, podsAuthoritative: boolean, certified: CertifiedPodKey | null = null): Refused | null {
  const key = `${peer.namespace}/${sub.identity.pod}`;
  const sa = view.podServiceAccounts.get(key);
  if (sa === undefined && podsAuthoritative) return { reason: 'unknown-pod', detail: `no meshed pod ${key.slice(0, 300)} is known` };
  if (sa !== undefined && sa !== peer.serviceAccount) return { reason: 'pod-mismatch', detail: `pod ${key} runs as service account ${sa}, the client certificate is ${peer.spiffeId}` };
  if (certified !== null && !isCertifiedPod(certified.key, peer.namespace, peer.serviceAccount, String(sub.identity.pod ?? ''), view.podUids?.get(key), certified.keyedDigest))
    return {
      reason: 'pod-not-certified',
      detail: `the client certificate was issued to another pod than ${key.slice(0, 300)}${sa !== undefined && view.podUids?.has(key) ? ' (or to an earlier pod of that name)' : ''}: a certificate bound to a pod may subscribe for that pod only`,
    };
  if (sa === undefined) return null;
  const actual = view.podLabels.get(key) ?? {};
  for (const [k, v] of Object.entries(sub.identity.labels ?? {}))
    if (actual[k] !== v) return { reason: 'labels-mismatch', detail: `pod ${key} has no label ${JSON.stringify(k.slice(0, 100))}=${JSON.stringify(String(v).slice(0, 100))}` };
  return null;
}
