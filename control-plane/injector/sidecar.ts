import type { V1Container, V1Volume } from '@kubernetes/client-node';
import { INIT_CONTAINER, PROXY_CONTAINER } from './annotations.js';
import type { InjectOptions, ProxyResources } from './options.js';
import { APP_PROBES_ENV } from '../../contract/app-probes.js';

/**
 * The containers and volumes the injector adds. Shapes follow Linkerd's proxy partials
 * (charts/partials/templates/_proxy.tpl, _proxy-init.tpl, _volumes.tpl) and Istio's
 * native-sidecar template: init container with NET_ADMIN/NET_RAW only, proxy as a
 * locked-down non-root container, identity from a projected, audience-bound token.
 */
export const TOKEN_VOLUME = 'wren-identity-token';
export const TOKEN_DIR = '/var/run/secrets/wren.io/identity';
export const PROXY_RUN_VOLUME = 'wren-proxy-run';
export const PROXY_RUN_DIR = '/var/run/wren';
export const INIT_RUN_VOLUME = 'wren-init-run';
/** The metrics port's readiness path (proxy/admin/metrics-server.ts), Istio's /healthz/ready. */
const READY_PATH = '/healthz/ready';

export interface Interception {
  readonly skipInboundPorts: readonly string[];
  readonly skipOutboundPorts: readonly string[];
  readonly skipOutboundCidrs: readonly string[];
}

export function buildVolumes(o: InjectOptions): V1Volume[] {
  return [
    {
      name: TOKEN_VOLUME,
      projected: {
        sources: [{ serviceAccountToken: { audience: o.tokenAudience, expirationSeconds: o.tokenExpirationSeconds, path: 'token' } }],
      },
    },
    // Certificates and keys are written at runtime; memory-backed so keys never hit disk.
    { name: PROXY_RUN_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '10Mi' } },
    // iptables takes /run/xtables.lock; the init container's root filesystem is read-only.
    { name: INIT_RUN_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
  ];
}

export function buildInitContainer(o: InjectOptions, ic: Interception): V1Container {
  const args = [
    'iptables',
    '--proxy-uid', String(o.proxyUid),
    '--inbound-port', String(o.inboundPort),
    '--outbound-port', String(o.outboundPort),
    // The proxy's own ports are never redirected inbound: each one the proxy is told (WREN_*_PORT) is passed on.
    '--admin-port', String(o.adminPort),
    '--metrics-port', String(o.metricsPort),
    // Always: the pod's IPs are not known at admission, so `wren iptables` decides in the
    // pod (ip6tables rules when it has an IPv6 address; docs/kubernetes.md, IPv6).
    '--ipv6',
  ];
  if (ic.skipInboundPorts.length) args.push('--skip-inbound-ports', ic.skipInboundPorts.join(','));
  if (ic.skipOutboundPorts.length) args.push('--skip-outbound-ports', ic.skipOutboundPorts.join(','));
  if (ic.skipOutboundCidrs.length) args.push('--skip-outbound-cidrs', ic.skipOutboundCidrs.join(','));
  return {
    name: INIT_CONTAINER,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy,
    args,
    // Both limits, as Istio's istio-init and Linkerd's proxy-init carry: a namespace whose
    // ResourceQuota covers limits.cpu or limits.memory refuses any container without them,
    // and no annotation reaches this container (the proxy's do: wren.io/proxy-*-limit).
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '1', memory: '128Mi' } },
    securityContext: {
      // Rewriting the pod's nat table needs root plus NET_ADMIN/NET_RAW, nothing more.
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [{ name: INIT_RUN_VOLUME, mountPath: '/run' }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

function resources(r: ProxyResources): V1Container['resources'] {
  const limits: Record<string, string> = {};
  if (r.cpuLimit) limits.cpu = r.cpuLimit;
  if (r.memoryLimit) limits.memory = r.memoryLimit;
  return { requests: { cpu: r.cpuRequest, memory: r.memoryRequest }, ...(Object.keys(limits).length ? { limits } : {}) };
}

/** What a pod's annotations set in its proxy's environment (inject-pod.ts proxySettings). */
export interface ProxyEnvSettings {
  readonly logLevel: string;
  /** WREN_CONCURRENCY; undefined: the proxy's default. */
  readonly concurrency: number | undefined;
  /** WREN_EGRESS_SERVICES; []: every service. */
  readonly egress: readonly string[];
  /** WREN_MESH_HTTP1; undefined: the proxy's default. */
  readonly meshHttp1: 'h1' | 'h2' | 'mux' | undefined;
  /** WREN_MESH_HTTP2; undefined: the proxy's default. */
  readonly meshHttp2: 'h2' | 'mux' | undefined;
  /** WREN_OPAQUE_PORTS from wren.io/opaque-ports, replacing the proxy's default list ([]: none, sent as ""); undefined: the proxy's default. */
  readonly opaquePorts?: readonly number[];
  /** WREN_TRACING_SAMPLING, WREN_ACCESS_LOG, WREN_ACCESS_LOG_SAMPLING from the telemetry annotations (telemetry-annotations.ts). */
  readonly telemetryEnv?: readonly { readonly name: string; readonly value: string }[];
  /** WREN_WORKLOAD_NAME / _APP / _VERSION (translate/pod-workload.ts); '' values are left out. */
  readonly workload?: { readonly name: string; readonly app: string; readonly version: string };
  /** WREN_APP_PROBES: the app's rewritten kubelet probes as JSON (probe-rewrite.ts); '' or absent: none. */
  readonly appProbes?: string;
  /** WREN_SHUTDOWN_GRACE_PERIOD / WREN_SHUTDOWN_MIN_DRAIN (inject-pod.ts shutdownSettings); minDrain absent: the proxy's default. */
  readonly shutdown?: { readonly gracePeriod: string; readonly minDrain?: string };
}

function workloadEnv(w: ProxyEnvSettings['workload']): { name: string; value: string }[] {
  if (!w) return [];
  const out: { name: string; value: string }[] = [];
  if (w.name) out.push({ name: 'WREN_WORKLOAD_NAME', value: w.name });
  if (w.app) out.push({ name: 'WREN_WORKLOAD_APP', value: w.app });
  if (w.version) out.push({ name: 'WREN_WORKLOAD_VERSION', value: w.version });
  return out;
}

export function buildProxyContainer(o: InjectOptions, r: ProxyResources, s: ProxyEnvSettings): V1Container {
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
  const awaitCmd = [...o.wrenCommand, 'proxy', 'await', '--admin-port', String(o.adminPort)];
  const c: V1Container = {
    name: PROXY_CONTAINER,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy,
    args: ['proxy'],
    env: [
      { name: 'POD_NAME', ...field('metadata.name') },
      { name: 'POD_NAMESPACE', ...field('metadata.namespace') },
      { name: 'POD_IP', ...field('status.podIP') },
      { name: 'WREN_SERVICE_ACCOUNT', ...field('spec.serviceAccountName') },
      { name: 'WREN_TRUST_DOMAIN', value: o.trustDomain },
      { name: 'WREN_CONTROL_PLANE', value: o.controlPlaneAddress },
      { name: 'WREN_TRUST_BUNDLE', value: o.trustBundlePem },
      { name: 'WREN_TOKEN_FILE', value: `${TOKEN_DIR}/token` },
      { name: 'WREN_RUN_DIR', value: PROXY_RUN_DIR },
      { name: 'WREN_LOG_LEVEL', value: s.logLevel },
      { name: 'WREN_INBOUND_PORT', value: String(o.inboundPort) },
      { name: 'WREN_OUTBOUND_PORT', value: String(o.outboundPort) },
      { name: 'WREN_ADMIN_PORT', value: String(o.adminPort) },
      { name: 'WREN_METRICS_PORT', value: String(o.metricsPort) },
      ...(s.shutdown ? [{ name: 'WREN_SHUTDOWN_GRACE_PERIOD', value: s.shutdown.gracePeriod }] : []),
      ...(s.shutdown?.minDrain === undefined ? [] : [{ name: 'WREN_SHUTDOWN_MIN_DRAIN', value: s.shutdown.minDrain }]),
      ...(s.concurrency === undefined ? [] : [{ name: 'WREN_CONCURRENCY', value: String(s.concurrency) }]),
      ...(s.egress.length > 0 ? [{ name: 'WREN_EGRESS_SERVICES', value: s.egress.join(',') }] : []),
      ...(s.meshHttp1 === undefined ? [] : [{ name: 'WREN_MESH_HTTP1', value: s.meshHttp1 }]),
      ...(s.meshHttp2 === undefined ? [] : [{ name: 'WREN_MESH_HTTP2', value: s.meshHttp2 }]),
      ...(s.opaquePorts === undefined ? [] : [{ name: 'WREN_OPAQUE_PORTS', value: s.opaquePorts.join(',') }]),
      ...(o.proxyTraceCollector === '' ? [] : [{ name: 'WREN_TRACING_COLLECTOR', value: o.proxyTraceCollector }]),
      ...(o.proxyTraceCollectorPlaintext ? [{ name: 'WREN_TRACING_COLLECTOR_PLAINTEXT', value: 'true' }] : []),
      ...workloadEnv(s.workload),
      ...(s.telemetryEnv ?? []),
      ...(s.appProbes ? [{ name: APP_PROBES_ENV, value: s.appProbes }] : []),
    ],
    // wren-metrics: what a PodMonitor or the prometheus.io/port annotation scrapes (Istio's http-envoy-prom 15090 / 15020).
    ports: [{ name: 'wren-inbound', containerPort: o.inboundPort, protocol: 'TCP' }, { name: 'wren-metrics', containerPort: o.metricsPort, protocol: 'TCP' }],
    resources: resources(r),
    securityContext: {
      runAsUser: o.proxyUid,
      runAsGroup: o.proxyUid,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: PROXY_RUN_VOLUME, mountPath: PROXY_RUN_DIR },
    ],
    // After start-up kubelet keeps asking the proxy whether it can take traffic: its
    // readiness (config received, not draining, every listener worker up: proxy.ts
    // readiness) on the metrics port, which kubelet reaches on the pod IP (the admin port is
    // loopback-only). Without it a draining proxy (POST /drain) or one whose worker is
    // restarting left the pod Ready and its endpoints in every peer's balancer. Istio
    // probes /healthz/ready on 15021, Linkerd /ready on 4191, the same way.
    readinessProbe: {
      httpGet: { path: READY_PATH, port: o.metricsPort, scheme: 'HTTP' },
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 3,
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  if (o.nativeSidecars) {
    // kubelet starts the next container only once this probe passes. The admin port
    // binds 127.0.0.1 (kubelet's httpGet cannot reach it), so the probe is an exec of
    // `wren proxy await`, which polls http://127.0.0.1:ADMIN/ready.
    c.restartPolicy = 'Always';
    c.startupProbe = {
      exec: { command: [...awaitCmd, '--timeout', '2s'] },
      periodSeconds: 1,
      timeoutSeconds: 3,
      failureThreshold: 120,
    };
  } else {
    // Classic sidecar (Kubernetes < 1.29): kubelet runs postStart to completion before
    // starting the next container, so the app waits for a ready proxy (Linkerd's
    // linkerd-await hook, _proxy.tpl).
    c.lifecycle = { postStart: { exec: { command: [...awaitCmd, '--timeout', '120s'] } } };
  }
  return c;
}
