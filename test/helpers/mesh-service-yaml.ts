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
 * 80, http1) whose endpoints are on 127.0.0.1, and `policy`, the lines of its TrafficPolicy
 * (e.g. `retry: { attempts: 2, retryOn: [5xx] }`), if any.
 */
export function meshServiceYaml(name: string, endpoints: readonly MeshEndpointYaml[], policy: readonly string[] = []): string {
  const workload = (w: MeshEndpointYaml['workload']) =>
    w ? `, workload: { name: ${w.name}, namespace: default${w.app ? `, app: ${w.app}` : ''}${w.version ? `, version: ${w.version}` : ''} }` : '';
  return `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: ${name}, namespace: default }
spec:
  ports:
    - name: http
      port: 80
      protocol: http1
      endpoints:
${endpoints.map((e) => `        - { address: 127.0.0.1, port: ${e.port}, proxyPort: ${e.proxyPort}, identity: "${e.identity}"${workload(e.workload)} }\n`).join('')}${
    policy.length ? `  policy:\n${policy.map((l) => `    ${l}\n`).join('')}` : ''
  }`;
}
