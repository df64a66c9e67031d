import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { replaceFile } from './helpers/replace-file.js';
import { subscriber } from './helpers/subscriber.js';
import { waitFor } from './control-plane-harness.js';
import { BATCH_CONSUMER_ROUTE_YAML } from './helpers/routes.js';
import { servicesYaml } from './helpers/service-yaml.js';

const services = servicesYaml('shop', [['reviews', '10.96.0.40', 9080], ['reviews-v2', '10.96.0.42', 9080]]);
const other = (addresses: string[]) => `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: other, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
${addresses.map((a) => `    - { address: ${a}, port: 8080 }`).join('\n')}
`;
const consumer = BATCH_CONSUMER_ROUTE_YAML;

const routesOf = (c: DiscoveryClient): string[] =>
  (c.current()?.services.find((s) => s.name === 'reviews' && s.namespace === 'shop')?.routes ?? []).map((r) => `${r.namespace}/${r.name}`);

/**
 * Subscribers at one ACKed version and with one filter share the delta the server makes
 * (discovery-server.ts entryFor). A namespace's last consumer route deleted puts its
 * subscribers beside the others (route namespace '*'), but what they ACKed differs: each
 * must get the delta from its own view, whichever subscriber the server pumps first.
 */
describe.each(['other namespace first', 'consumer namespace first'])('the last consumer route of a namespace deleted (%s)', (order) => {
  let m: DirControlPlane;
  const clients: DiscoveryClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    await m.close(100);
  });

  test('reaches the consumer namespace\'s proxies; the others see no change', async () => {
    m = await startDirControlPlane({
      prefix: 'wren-consumer-delete-', trustDomain: 'cluster.local', seed: 5,
      mesh: { 'services.yaml': services, 'other.yaml': other(['10.0.9.1']), 'consumer.yaml': consumer },
      dirSource: { watchDebounceMs: 10, rescanMs: 300 },
    });
    const connect = async (ns: string): Promise<DiscoveryClient> => {
      const c = subscriber(m.cp, { namespace: ns, serviceAccount: 'app', pod: `app-${ns}` });
      clients.push(c);
      await c.onFirstSnapshot();
      return c;
    };
    let web: DiscoveryClient;
    let batch: DiscoveryClient;
    if (order === 'other namespace first') {
      web = await connect('web');
      batch = await connect('batch');
    } else {
      batch = await connect('batch');
      web = await connect('web');
    }
    expect(routesOf(web)).toEqual([]);
    expect(routesOf(batch)).toEqual(['batch/batch-reviews']);

    // A change both get, so both ACK one version with one filter.
    await replaceFile(join(m.dir, 'other.yaml'), other(['10.0.9.1', '10.0.9.2']));
    await waitFor(
      () => web.current()!.version === batch.current()!.version && web.current()!.services.find((s) => s.name === 'other')!.ports[0].endpoints.length === 2,
      'both at one version',
    );

    await rm(join(m.dir, 'consumer.yaml'));
    await waitFor(() => routesOf(batch).length === 0, "the deletion at batch's proxy");
    expect(routesOf(web)).toEqual([]);
    expect(web.stats.rejected + batch.stats.rejected).toBe(0);
  });
});
