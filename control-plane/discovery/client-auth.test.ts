import type { Subscribe } from '../../contract/discovery.js';
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
