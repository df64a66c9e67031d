import type { Endpoint, Service, ServicePort, TrafficPolicy } from '../../contract/model.js';
import { ClusterSet, type ClusterHandle } from './cluster-set.js';

const port = (n: number): ServicePort => ({ name: `p${n}`, port: n, protocol: 'http1', endpoints: [] });
const service = (name: string, ports: ServicePort[]): Service => ({ name, namespace: 'default', clusterIPs: [], ports, policy: {} as TrafficPolicy });

/** Clusters that record what the set does to them. */
function recording(): { set: ClusterSet; made: string[]; closed: string[] } {
  const made: string[] = [];
  const closed: string[] = [];
  const set = new ClusterSet((name) => {
    made.push(name);
    return { name, update: (_e: readonly Endpoint[]) => {}, updatePolicy: () => {}, close: () => closed.push(name) } as unknown as ClusterHandle;
  });
  return { set, made, closed };
}

describe('ClusterSet', () => {
  it('finds a cluster by the applied port object, by an equal one from elsewhere, and after a new snapshot by either', () => {
    const { set, made, closed } = recording();
    const p80 = port(80);
    const web = service('web', [p80, port(81)]);
    set.apply([web]);
    const c = set.get(web, p80);
    expect(c?.name).toBe('web.default:80');
    expect(set.get(web, port(80))).toBe(c);
    expect(set.get(web, web.ports[1])?.name).toBe('web.default:81');
    // The next snapshot has new objects: the cluster is the same one, found by both.
    const p80b = port(80);
    const web2 = service('web', [p80b]);
    set.apply([web2]);
    expect(set.get(web2, p80b)).toBe(c);
    expect(set.get(web, p80)).toBe(c);
    expect(made).toEqual(['web.default:80', 'web.default:81']);
    expect(closed).toEqual(['web.default:81']);
    expect(set.get(web, web.ports[1])).toBeUndefined();
  });

  it('finds nothing for a service that left, by its old port object either', () => {
    const { set } = recording();
    const p = port(80);
    const web = service('web', [p]);
    set.apply([web]);
    set.apply([service('api', [port(80)])]);
    expect(set.get(web, p)).toBeUndefined();
    set.close();
    expect(set.get(web, p)).toBeUndefined();
  });
});
