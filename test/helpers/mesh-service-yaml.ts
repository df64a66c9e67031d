import { stringify } from 'yaml';

/** One endpoint of a directory MeshService: the app's port on 127.0.0.1 behind the sidecar at `proxyPort` with `identity`. */
export interface MeshEndpointYaml {
  readonly port: number;
  readonly proxyPort: number;
  readonly identity: string;
  /** The pod's workload labels as the control plane fills them (contract Endpoint.workload). */
  readonly workload?: { readonly name: string; readonly app?: string; readonly version?: string };
}

/**
 * A directory-source MeshService manifest: `name` in namespace default with one port (http,
 * 80, http1) whose endpoints are on 127.0.0.1, and its TrafficPolicy `policy` if given
 * (fields as in the manifest: durations as strings, e.g. `{ retry: { attempts: 2, retryOn: ['5xx'] } }`).
 */
export function meshServiceYaml(name: string, endpoints: readonly MeshEndpointYaml[], policy?: Readonly<Record<string, unknown>>): string {
  const endpoint = (e: MeshEndpointYaml) => ({
    address: '127.0.0.1', port: e.port, proxyPort: e.proxyPort, identity: e.identity,
    ...(e.workload ? { workload: { name: e.workload.name, namespace: 'default', ...(e.workload.app ? { app: e.workload.app } : {}), ...(e.workload.version ? { version: e.workload.version } : {}) } } : {}),
  });
  return stringify({
    apiVersion: 'policy.wren.io/v1alpha1',
    kind: 'MeshService',
    metadata: { name, namespace: 'default' },
    spec: { ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: endpoints.map(endpoint) }], ...(policy ? { policy } : {}) },
  });
}
