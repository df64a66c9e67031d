/**
 * Injector settings: which image, which ports, how the proxy finds the control plane.
 * The ports and the proxy UID are fixed facts of the mesh (docs/kubernetes.md); they are
 * options only so tests and unusual clusters can change them consistently.
 */
export interface ProxyResources {
  readonly cpuRequest: string;
  readonly memoryRequest: string;
  /** '' = no limit. */
  readonly cpuLimit: string;
  readonly memoryLimit: string;
}

export interface InjectOptions {
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /**
   * Kubernetes >= 1.29: the proxy is an init container with restartPolicy Always (a
   * native sidecar): it starts before the app, keeps running, and does not keep Jobs
   * alive. false: classic first container plus a postStart `wren proxy await` hook.
   */
  readonly nativeSidecars: boolean;
  /**
   * The API server's version when `--sidecar-mode auto` read one older than 1.29
   * (injector/sidecar-mode.ts): a pod whose wren.io/sidecar-mode asks for native sidecars is
   * still given them (the annotation wins, as Istio's sidecar.istio.io/nativeSidecar does),
   * with an admission warning saying what that cluster does with them. Undefined otherwise.
   */
  readonly olderThanNativeSidecars?: string;
  readonly proxyUid: number;
  readonly inboundPort: number;
  readonly outboundPort: number;
  readonly adminPort: number;
  /** The proxy's read-only Prometheus port (listeners.metrics; Istio's 15020), announced by the prometheus.io/* annotations. */
  readonly metricsPort: number;
  readonly trustDomain: string;
  /** host:port of the control plane's gRPC (discovery + identity) service. */
  readonly controlPlaneAddress: string;
  /** PEM trust anchors handed to the proxy in WREN_TRUST_BUNDLE (like Linkerd's trust-anchors env). */
  readonly trustBundlePem: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** OTLP/gRPC collector for the sidecars' spans (WREN_TRACING_COLLECTOR); '' = none. */
  readonly proxyTraceCollector: string;
  /** The sidecars reach the collector in plaintext (WREN_TRACING_COLLECTOR_PLAINTEXT). */
  readonly proxyTraceCollectorPlaintext: boolean;
  readonly resources: ProxyResources;
  /** Command that runs the wren CLI inside the image (for exec probes and hooks). */
  readonly wrenCommand: readonly string[];
  /** Token audience the control plane checks with a TokenReview. */
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  /**
   * Labels of the pod's namespace when known (offline inject, tests). When undefined
   * the caller has already selected the pod (the webhook's namespace/object selectors
   * decide), so only an explicit pod-level `disabled` or a previous injection stops it.
   */
  readonly namespaceLabels?: Readonly<Record<string, string>>;
  /**
   * The namespace the pod is created in, when known (the AdmissionReview's
   * request.namespace; the workload's metadata.namespace in `wren inject`): a pod's own
   * metadata.namespace is often empty at admission, and a pod template has none.
   */
  readonly namespace?: string;
}

export const WREN_IMAGE = 'wren:0.1.0';

export const DEFAULT_INJECT_OPTIONS: InjectOptions = Object.freeze({
  image: WREN_IMAGE,
  imagePullPolicy: 'IfNotPresent',
  nativeSidecars: true,
  proxyUid: 2102,
  inboundPort: 15006,
  outboundPort: 15001,
  adminPort: 15000,
  metricsPort: 15020,
  trustDomain: 'cluster.local',
  controlPlaneAddress: 'wren-control-plane.wren-system.svc:15010',
  trustBundlePem: '',
  logLevel: 'info',
  proxyTraceCollector: '',
  proxyTraceCollectorPlaintext: false,
  resources: Object.freeze({ cpuRequest: '10m', memoryRequest: '20Mi', cpuLimit: '', memoryLimit: '' }),
  wrenCommand: Object.freeze(['node', '/app/dist/cli/wren.js']),
  tokenAudience: 'wren-identity',
  tokenExpirationSeconds: 3600,
});

const PORT_OPTIONS = ['inboundPort', 'outboundPort', 'adminPort', 'metricsPort'] as const;

/**
 * The defaults with `partial` over them. The proxy's four ports must be real, distinct
 * ports (1..65535): each goes to the proxy (WREN_*_PORT), to `wren iptables` in the init
 * container and, for the metrics port, into the rewritten kubelet probes, so a 0 (a
 * port only known once bound) would leave the probes pointing at nothing.
 */
export function resolveInjectOptions(partial: Partial<InjectOptions> = {}): InjectOptions {
  const o: InjectOptions = Object.freeze({
    ...DEFAULT_INJECT_OPTIONS,
    ...partial,
    resources: Object.freeze({ ...DEFAULT_INJECT_OPTIONS.resources, ...(partial.resources ?? {}) }),
  });
  const seen = new Map<number, string>();
  for (const k of PORT_OPTIONS) {
    const p = o[k];
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`injector option ${k}: expected a port 1..65535, got ${JSON.stringify(p)}`);
    if (seen.has(p)) throw new Error(`injector option ${k}: ${p} is already ${seen.get(p)}`);
    seen.set(p, k);
  }
  return o;
}
