import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane, type ControlPlaneOptions } from '../../control-plane/server.js';
import { KubernetesSource } from '../../control-plane/sources/kubernetes-source.js';
import type { FakeKubeApi } from '../fake-kube-api.js';

/**
 * A real control plane in Kubernetes mode (cluster.local) watching the fake API server through
 * the real client-node informers, with fast re-list backoff (20-200 ms), no admin port unless
 * `control` gives one; resolves once its first index is built.
 */
export async function startKubeControlPlane(
  api: FakeKubeApi,
  o: { readonly seed: number; readonly control?: Partial<Omit<ControlPlaneOptions, 'source' | 'trustDomain' | 'random' | 'clock'>> },
): Promise<ControlPlane> {
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, logger: silentLogger, ...o.control,
    trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(o.seed),
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
  });
  await cp.whenReady();
  return cp;
}
