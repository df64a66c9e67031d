import { createHmac } from 'node:crypto';
import type { Subscribe } from '../../contract/discovery.js';
import { CertifyLimiter } from '../identity/certify-limiter.js';
import type { PeerIdentity } from '../identity/peer-certificate.js';
import { EMPTY_POLICY_VIEW, type PolicyView } from '../store/mesh-store.js';
import { checkIdentityClaim, checkPodClaim } from './client-auth.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const peer: PeerIdentity = { spiffeId: WEB, namespace: 'shop', serviceAccount: 'web', notAfterMs: 0, serial: '01' };
const view: PolicyView = {
  ...EMPTY_POLICY_VIEW,
  podLabels: new Map<string, Record<string, string>>([['shop/web-0', { app: 'web', tier: 'front' }], ['shop/cart-0', { app: 'cart' }]]),
  podServiceAccounts: new Map([['shop/web-0', 'web'], ['shop/cart-0', 'cart']]),
};
const sub = (pod: string, labels: Record<string, string> = {}, spiffeId = WEB, namespace = 'shop'): Subscribe => ({ identity: { spiffeId, namespace, pod, labels }, services: [], lastVersion: '' });

describe('checkIdentityClaim', () => {
  test('the identity and namespace must be the certificate\'s', () => {
    expect(checkIdentityClaim(peer, sub('web-0'))).toBeNull();
    expect(checkIdentityClaim(peer, sub('web-0', {}, 'spiffe://cluster.local/ns/shop/sa/cart'))?.reason).toBe('identity-mismatch');
    expect(checkIdentityClaim(peer, sub('web-0', {}, WEB, 'payments'))?.reason).toBe('namespace-mismatch');
  });
});

describe('checkPodClaim', () => {
  test('a known pod must run as the certificate\'s service account, with the labels claimed (a subset is fine)', () => {
    expect(checkPodClaim(peer, sub('web-0', { app: 'web' }), view, true)).toBeNull();
    expect(checkPodClaim(peer, sub('web-0'), view, true)).toBeNull();
    expect(checkPodClaim(peer, sub('cart-0'), view, false)?.reason).toBe('pod-mismatch');
    expect(checkPodClaim(peer, sub('web-0', { app: 'cart' }), view, false)?.reason).toBe('labels-mismatch');
    expect(checkPodClaim(peer, sub('web-0', { app: 'web', extra: 'x' }), view, false)?.reason).toBe('labels-mismatch');
  });

  test('an unknown pod: refused where the source knows every pod (Kubernetes), let through in a directory mesh', () => {
    expect(checkPodClaim(peer, sub('web-9'), view, true)?.reason).toBe('unknown-pod');
    expect(checkPodClaim(peer, sub('web-9', { app: 'anything' }), view, false)).toBeNull();
  });
});

describe('checkPodClaim with a certificate bound to a pod (adv59)', () => {
  // The keys Certify writes into the certificates it signs for pod-bound tokens (certify-limiter.ts keyOf).
  const limiter = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => 0 });
  const keyedDigest = (d: string): string => createHmac('sha256', 'ca-key').update(d).digest('hex');
  const keyOfPod = (pod: string, podUid?: string): string =>
    limiter.keyOf({ namespace: 'shop', serviceAccount: 'web', via: 'kubernetes', pod, ...(podUid ? { podUid } : {}) }, null, Buffer.from('tok'));
  const twoPods: PolicyView = {
    ...view,
    podLabels: new Map<string, Record<string, string>>([...view.podLabels, ['shop/web-1', { app: 'web' }]]),
    podServiceAccounts: new Map([...view.podServiceAccounts, ['shop/web-1', 'web']]),
    podUids: new Map([['shop/web-0', 'uid-0'], ['shop/web-1', 'uid-1']]),
  };
  const bound = (pod: string, podUid?: string) => ({ key: keyOfPod(pod, podUid), keyedDigest });

  test('its own pod: let through; a sibling pod of the same service account: refused pod-not-certified', () => {
    expect(checkPodClaim(peer, sub('web-0'), twoPods, true, bound('web-0', 'uid-0'))).toBeNull();
    const r = checkPodClaim(peer, sub('web-1'), twoPods, true, bound('web-0', 'uid-0'));
    expect(r).toEqual({ reason: 'pod-not-certified', detail: 'the client certificate was issued to another pod than shop/web-1 (or to an earlier pod of that name): a certificate bound to a pod may subscribe for that pod only' });
  });

  test('an earlier pod of the same name (a StatefulSet pod created again: another UID) is not the pod the source knows now', () => {
    expect(checkPodClaim(peer, sub('web-0'), twoPods, true, bound('web-0', 'uid-0-earlier'))?.reason).toBe('pod-not-certified');
  });

  test('a certificate whose token named no UID matches the name; so does one signed before keys were digests (`pod NS/NAME`)', () => {
    expect(checkPodClaim(peer, sub('web-0'), twoPods, true, bound('web-0'))).toBeNull();
    expect(checkPodClaim(peer, sub('web-1'), twoPods, true, bound('web-0'))?.reason).toBe('pod-not-certified');
    expect(checkPodClaim(peer, sub('web-0'), twoPods, true, { key: 'pod shop/web-0', keyedDigest })).toBeNull();
    expect(checkPodClaim(peer, sub('web-1'), twoPods, true, { key: 'pod shop/web-0', keyedDigest })?.reason).toBe('pod-not-certified');
    // Signed before 2026-12-07 (adv59) for a token that named no UID: the CA's keyed digest of the name.
    const legacy = `pod shop/web ${keyedDigest('pod shop/web-0').slice(0, 32)}`;
    expect(checkPodClaim(peer, sub('web-0'), twoPods, true, { key: legacy, keyedDigest })).toBeNull();
    expect(checkPodClaim(peer, sub('web-1'), twoPods, true, { key: legacy, keyedDigest })?.reason).toBe('pod-not-certified');
  });

  test('a source that does not list the pod (directory mesh): a pod-bound certificate still names only its own pod', () => {
    expect(checkPodClaim(peer, sub('web-9'), view, false, bound('web-9'))).toBeNull();
    expect(checkPodClaim(peer, sub('web-8'), view, false, bound('web-9'))).toEqual({
      reason: 'pod-not-certified', detail: 'the client certificate was issued to another pod than shop/web-8: a certificate bound to a pod may subscribe for that pod only',
    });
    // A certificate bound to no pod (a bootstrap token's): as before.
    expect(checkPodClaim(peer, sub('web-8'), view, false, null)).toBeNull();
  });

  test('the other checks come first: another service account\'s pod is pod-mismatch, an unknown pod unknown-pod', () => {
    expect(checkPodClaim(peer, sub('cart-0'), twoPods, true, bound('web-0', 'uid-0'))?.reason).toBe('pod-mismatch');
    expect(checkPodClaim(peer, sub('web-9'), twoPods, true, bound('web-0', 'uid-0'))?.reason).toBe('unknown-pod');
  });
});
