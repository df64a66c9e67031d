import { parsePod } from '../translate/k8s-objects.js';
import { withSidecar } from '../../test/helpers/meshed-pod.js';
import { ClusterIndex } from './cluster-index.js';

const pod = (name: string, uid: string, labels: Record<string, string> = {}) =>
  parsePod(withSidecar({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', uid, labels: { 'wren.io/inject': 'enabled', ...labels } }, spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] } }), '');

/**
 * The pods' UIDs in the policy view: the same map until one changes, and which pods' changed
 * since the last map (PolicyView.podUidChanges), so the discovery server re-checks the streams
 * of certificates bound to those pods only (discovery-server.ts recheckPodBound), not every
 * pod-bound stream on every change of labels or policies.
 */
test('podUids stays the same map while no UID changes; a pod created again under its name is named in podUidChanges, since the previous map', () => {
  const idx = new ClusterIndex('cluster.local');
  idx.setPod('shop', 'web-0', pod('web-0', 'u0'));
  idx.setPod('shop', 'web-1', pod('web-1', 'u1'));
  const first = idx.flush().policy!;
  expect(first.podUids).toEqual(new Map([['shop/web-0', 'u0'], ['shop/web-1', 'u1']]));
  expect(first.podUidChanges).toEqual({ since: undefined, keys: new Set(['shop/web-0', 'shop/web-1']) });
  // A label change: a new policy view, the same UIDs map, no changes named.
  idx.setPod('shop', 'web-0', pod('web-0', 'u0', { tier: 'front' }));
  const labelled = idx.flush().policy!;
  expect(labelled).not.toBe(first);
  expect(labelled.podUids).toBe(first.podUids);
  expect(labelled.podUidChanges).toBeUndefined();
  // web-1 deleted and created again (a StatefulSet's): only it is named, since the map before.
  idx.setPod('shop', 'web-1', null);
  idx.setPod('shop', 'web-1', pod('web-1', 'u1-again'));
  const again = idx.flush().policy!;
  expect(again.podUids).not.toBe(first.podUids);
  expect(again.podUids?.get('shop/web-1')).toBe('u1-again');
  expect(again.podUidChanges).toEqual({ since: first.podUids, keys: new Set(['shop/web-1']) });
});
