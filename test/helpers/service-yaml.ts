/** Kubernetes Service manifests (one document each, `---` between) for a manifest directory: `[name, clusterIP, port]`, the port named `http` with targetPort = port. */
export function servicesYaml(namespace: string, services: readonly (readonly [name: string, clusterIP: string, port: number])[]): string {
  return services
    .map(
      ([name, ip, port]) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${namespace} }
spec: { clusterIP: ${ip}, ports: [{ name: http, port: ${port}, targetPort: ${port} }] }
`,
    )
    .join('---\n');
}
