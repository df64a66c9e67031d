/**
 * Wren's own gRPC channels (the sidecar's Certify and discovery channels to the control
 * plane, its gRPC health probes of endpoints and of its app, the sidecar's and the control
 * plane's OTLP trace exporters) never go through a proxy named by the environment.
 *
 * grpc-js (http_proxy.ts, mapProxyName) sends a channel through an HTTP CONNECT proxy when
 * `grpc_proxy`, `https_proxy` or `http_proxy` is set, unless `no_grpc_proxy` / `no_proxy`
 * names the target or the channel sets `grpc.enable_http_proxy: 0`. A pod-wide HTTP(S)_PROXY
 * is common in corporate clusters, set on every container of a pod for the app's calls out;
 * it must not carry the mesh's certificate signing, discovery or probes to an outside proxy
 * (which would see, and could refuse or delay, the mesh's control traffic). Envoy, Istio's
 * data plane, reads no proxy from the environment: its xDS, health-check and tracing
 * connections go where its bootstrap says. docs/kubernetes.md, `HTTP_PROXY` and friends in the pod.
 */
export const NO_ENV_PROXY = { 'grpc.enable_http_proxy': 0 } as const;

/** The variables grpc-js reads a proxy from (lowercase only: it reads no other spelling). */
const PROXY_VARIABLES = ['grpc_proxy', 'https_proxy', 'http_proxy'] as const;

/**
 * Runs `fn` with the proxy variables out of process.env, for a channel made by a library
 * that takes no channel options (the OTLP exporter, otlp-exporter.ts). grpc-js reads them
 * synchronously when a channel is constructed; a listener worker's process.env is its own
 * thread's copy, so nothing else sees the environment without them.
 */
export function withoutEnvProxy<T>(fn: () => T): T {
  const env = process.env;
  if (env.grpc_proxy === undefined && env.https_proxy === undefined && env.http_proxy === undefined) return fn();
  const hidden: [string, string][] = [];
  for (const k of PROXY_VARIABLES) {
    const v = env[k];
    if (v === undefined) continue;
    hidden.push([k, v]);
    delete env[k];
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of hidden) env[k] = v;
  }
}
