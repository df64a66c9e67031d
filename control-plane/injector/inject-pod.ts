import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { A, INIT_CONTAINER, PROXY_CONTAINER, parseCidrList, parseOpaquePorts, parsePortList, parseServiceList, quantityValue } from './annotations.js';
import { escapePointer, type JsonPatchOp } from './json-patch.js';
import { resolveInjectOptions, type InjectOptions, type ProxyResources } from './options.js';
import { podWorkload } from '../translate/pod-workload.js';
import { MESH_PROXY_PORT_ANNOTATION } from '../translate/k8s-objects.js';
import { buildInitContainer, buildProxyContainer, buildVolumes, INIT_RUN_VOLUME, PROXY_RUN_VOLUME, TOKEN_VOLUME, type Interception, type ProxyEnvSettings } from './sidecar.js';
import { telemetryEnv } from './telemetry-annotations.js';
import { rewriteProbes } from './probe-rewrite.js';
import { ConfigError, duration } from '../../common/schema.js';

export interface InjectResult {
  readonly patch: JsonPatchOp[];
  readonly injected: boolean;
  /** Why (not) injected, for logs and `wren inject` output. */
  readonly reason: string;
  /** Ignored malformed annotations; returned to kubectl as AdmissionReview warnings. */
  readonly warnings: string[];
}

/**
 * Opt-in rules, the same as the two webhooks in manifests/install/40-injector-webhook.yaml
 * (test/manifests.test.ts checks they agree): `disabled` on the pod or its namespace
 * always wins (as with Istio's namespace label); otherwise `enabled` on either opts in.
 * A pod value that is neither (`"false"`, `"off"`, `"Disabled"`) opts out, with a warning:
 * the pod asked for something other than the mesh, as Istio (any value but y/yes/true/on)
 * and Linkerd (any value but enabled/ingress) read their pod-level setting. A namespace
 * value that is neither is treated as unset, as the webhooks' selectors see it.
 */
const INJECT_VALUES: readonly string[] = ['enabled', 'disabled'];

/**
 * Never injected, whatever their labels say (the webhooks' namespaceSelector leaves them
 * out too): the cluster's own pods (kube-system: CoreDNS would wait for a proxy that waits
 * for DNS to find its control plane) and Wren's control plane, which the proxies need to
 * start. `linkerd inject` refuses kube-system the same way.
 */
const SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'wren-system'];

/** The volumes buildVolumes adds. */
const INJECTED_VOLUMES: readonly string[] = [TOKEN_VOLUME, PROXY_RUN_VOLUME, INIT_RUN_VOLUME];

/** The node label kubelet sets from its GOOS (k8s.io/api/core/v1 LabelOSStable). */
const NODE_OS_LABEL = 'kubernetes.io/os';

/** The annotation kubelet sets on the API object of a static pod (pkg/kubelet/types: ConfigMirrorAnnotationKey). */
const MIRROR_POD = 'kubernetes.io/config.mirror';

function decide(pod: V1Pod, o: InjectOptions, warnings: string[]): { inject: boolean; reason: string } {
  const meta = pod.metadata ?? {};
  const spec = pod.spec;
  if (!spec) return { inject: false, reason: 'pod has no spec' };
  const all = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
  if (all.some((c) => c.name === PROXY_CONTAINER) || meta.annotations?.[A.injected] !== undefined)
    return { inject: false, reason: 'already injected' };
  const namespace = o.namespace || meta.namespace;
  if (namespace && SYSTEM_NAMESPACES.includes(namespace)) return { inject: false, reason: `pods in ${namespace} are never injected` };
  if (spec.hostNetwork) return { inject: false, reason: 'hostNetwork pods share the node network namespace' };
  // The proxy and wren-init are Linux containers, and the API server refuses a pod whose
  // spec.os.name is windows with Linux security settings on any container (runAsUser,
  // capabilities, seccompProfile, readOnlyRootFilesystem: KEP-2802), so injecting would
  // have blocked the pod.
  if (spec.os?.name !== undefined && spec.os.name !== 'linux') return { inject: false, reason: `spec.os.name is ${spec.os.name}: the proxy runs on Linux only` };
  // spec.os is optional, and most Windows workloads only select Windows nodes (the way the
  // Kubernetes docs' Windows guide shows): injected, such a pod was scheduled there with two
  // Linux images, which a Windows node cannot run, so it never started.
  const nodeOs = spec.nodeSelector?.[NODE_OS_LABEL];
  if (nodeOs !== undefined && nodeOs !== 'linux') return { inject: false, reason: `nodeSelector ${NODE_OS_LABEL} is ${nodeOs}: the proxy runs on Linux only` };

  // A static pod's mirror (kubelet posts it for a manifest on the node): kubelet runs the
  // manifest, never this spec, so a proxy added here would not run, yet the control plane
  // would call the pod meshed; and the API server refuses a mirror pod with a service
  // account token volume, so the static pod would not even show.
  if (meta.annotations?.[MIRROR_POD] !== undefined) return { inject: false, reason: 'a static pod\'s mirror: kubelet runs the node\'s manifest, not this spec' };
  // An empty value is no setting (Istio reads "" as unset too).
  const podSetting = meta.labels?.[A.inject] || meta.annotations?.[A.inject] || undefined;
  let ns = o.namespaceLabels?.[A.inject] || undefined;
  if (ns !== undefined && !INJECT_VALUES.includes(ns)) {
    warnings.push(`namespace label ${A.inject}: ignoring ${JSON.stringify(ns)} (expected enabled or disabled)`);
    ns = undefined;
  }
  if (podSetting !== undefined && !INJECT_VALUES.includes(podSetting)) {
    warnings.push(`${A.inject}: ${JSON.stringify(podSetting)} is neither enabled nor disabled; the pod is not injected`);
    return { inject: false, reason: `pod has ${A.inject}: ${JSON.stringify(podSetting)}, not enabled` };
  }
  if (podSetting === 'disabled') return { inject: false, reason: `pod has ${A.inject}: disabled` };
  if (ns === 'disabled') return { inject: false, reason: `namespace has ${A.inject}: disabled` };
  if (podSetting === 'enabled') return { inject: true, reason: `pod has ${A.inject}: enabled` };
  if (ns === 'enabled') return { inject: true, reason: `namespace has ${A.inject}: enabled` };
  if (o.namespaceLabels === undefined) return { inject: true, reason: 'selected by the webhook configuration' };
  return { inject: false, reason: 'not opted in' };
}

/** `probeBypass`: ports kubelet's probes reach directly, when they are not rewritten (probe-rewrite.ts). */
function interception(pod: V1Pod, warnings: string[], probeBypass: readonly number[]): Interception {
  const ann = pod.metadata?.annotations ?? {};
  const list = <T>(key: string, parse: (s: string) => T[] | undefined): T[] => {
    const raw = ann[key];
    if (raw === undefined) return [];
    const v = parse(raw);
    if (v === undefined) warnings.push(`${key}: ignoring malformed value ${JSON.stringify(raw)}`);
    return v ?? [];
  };
  const inbound = [...list(A.skipInboundPorts, parsePortList), ...probeBypass.map(String)];
  return {
    skipInboundPorts: [...new Set(inbound)],
    skipOutboundPorts: list(A.skipOutboundPorts, parsePortList),
    skipOutboundCidrs: list(A.skipOutboundCidrs, parseCidrList),
  };
}

function proxySettings(pod: V1Pod, o: InjectOptions, warnings: string[]): { resources: ProxyResources } & ProxyEnvSettings {
  const ann = pod.metadata?.annotations ?? {};
  const r = o.resources;
  const cpu = resourcePair(ann, warnings, 'cpu', [A.cpuRequest, A.cpuLimit], [r.cpuRequest, r.cpuLimit]);
  const memory = resourcePair(ann, warnings, 'memory', [A.memoryRequest, A.memoryLimit], [r.memoryRequest, r.memoryLimit]);
  const resources = { cpuRequest: cpu.request, cpuLimit: cpu.limit, memoryRequest: memory.request, memoryLimit: memory.limit };
  let logLevel: string = o.logLevel;
  const l = ann[A.logLevel];
  if (l !== undefined) {
    if (['debug', 'info', 'warn', 'error'].includes(l)) logLevel = l;
    else warnings.push(`${A.logLevel}: ignoring ${JSON.stringify(l)} (expected debug, info, warn or error)`);
  }
  // Listener worker threads (the proxy's `concurrency`, like Istio's proxy.istio.io/config
  // concurrency); unset, the proxy's default (1, Linkerd's default of one worker) applies.
  let concurrency: number | undefined;
  const c = ann[A.concurrency];
  if (c !== undefined) {
    if (/^\d{1,2}$/.test(c.trim()) && Number(c) >= 1 && Number(c) <= 64) concurrency = Number(c);
    else warnings.push(`${A.concurrency}: ignoring ${JSON.stringify(c)} (expected an integer from 1 to 64)`);
  }
  let egress: readonly string[] = [];
  const e = ann[A.egressServices];
  if (e !== undefined) {
    const keys = parseServiceList(e);
    if (keys) egress = keys;
    else warnings.push(`${A.egressServices}: ignoring ${JSON.stringify(e)} (expected "name.namespace" service keys, comma-separated); the proxy subscribes to every service`);
  }
  // How HTTP/1.1 travels to peer sidecars (the proxy's protocol.meshHttp1); unset, the proxy's default (mux).
  let meshHttp1: 'h1' | 'h2' | 'mux' | undefined;
  const m = ann[A.meshHttp1];
  if (m !== undefined) {
    if (m === 'h1' || m === 'h2' || m === 'mux') meshHttp1 = m;
    else warnings.push(`${A.meshHttp1}: ignoring ${JSON.stringify(m)} (expected h1, mux or h2)`);
  }
  // How HTTP/2 and gRPC travel to peer sidecars (the proxy's protocol.meshHttp2); unset, the proxy's default (mux).
  let meshHttp2: 'h2' | 'mux' | undefined;
  const m2 = ann[A.meshHttp2];
  if (m2 !== undefined) {
    if (m2 === 'h2' || m2 === 'mux') meshHttp2 = m2;
    else warnings.push(`${A.meshHttp2}: ignoring ${JSON.stringify(m2)} (expected mux or h2)`);
  }
  // The pod's server-first ports (the proxy's protocol.opaquePorts). They replace the
  // proxy's default list, as Linkerd's config.linkerd.io/opaque-ports replaces its
  // proxy.opaquePorts default (pkg/inject: the injector adds the default annotation only to
  // a pod that has none of its own): a pod whose app speaks HTTP on 4444 or 6379 can take
  // that port out, and "" leaves none of its own. Ports a Service declares opaque are still
  // pushed by the control plane on top (translate/opaque-ports.ts).
  let opaquePorts: readonly number[] | undefined;
  const op = ann[A.opaquePorts];
  if (op !== undefined) {
    const ports = parseOpaquePorts(op);
    if (typeof ports !== 'string') opaquePorts = ports;
    else warnings.push(`${A.opaquePorts}: ignoring ${JSON.stringify(op)} (${ports}; expected ports and ranges, comma-separated, like "3306,5432,8000-8010"); the proxy's default opaque ports apply`);
  }
  // The workload name from the pod's owner references at admission (as Istio's injector
  // sets ISTIO_META_WORKLOAD_NAME), app/version from its labels: the proxy's own metric labels.
  const workload = podWorkload(pod.metadata ?? {});
  return { resources, logLevel, concurrency, egress, meshHttp1, meshHttp2, opaquePorts, workload, telemetryEnv: telemetryEnv(ann, warnings), shutdown: shutdownSettings(pod, o, warnings) };
}

/** The kubelet's default terminationGracePeriodSeconds (core/v1 PodSpec). */
const KUBELET_GRACE_SECONDS = 30;
/** How long before the kubelet's SIGKILL the drain ends, at most: the close, the last access-log and span flush. */
const KILL_MARGIN_MS = 5000;

/**
 * The proxy's drain from the pod's terminationGracePeriodSeconds and the sidecar mode
 * (docs/operations.md, Sidecar shutdown). The drain must end before the kubelet's SIGKILL,
 * which comes terminationGracePeriodSeconds after the pod's deletion whatever is in flight
 * (Istio's #34855: its terminationDrainDuration and the pod's grace period disagreed): the
 * grace period is the pod's less 5 s, or less a fifth of it when it is under 25 s.
 * The minimum drain keeps a classic sidecar's outbound up after SIGTERM, which the kubelet
 * sends the app and the proxy at once, for the app's own shutdown (the proxy's default,
 * 5 s or the grace period, the shorter, as Istio's terminationDrainDuration). A native
 * sidecar is stopped only once every app container has exited (KEP-753: sidecars are
 * terminated after the main containers, in reverse order), so nothing is left to call out
 * through it: 0, it exits as soon as it is idle.
 */
function shutdownSettings(pod: V1Pod, o: InjectOptions, warnings: string[]): NonNullable<ProxyEnvSettings['shutdown']> {
  const t = pod.spec?.terminationGracePeriodSeconds;
  const podMs = (typeof t === 'number' && Number.isFinite(t) && t >= 0 ? t : KUBELET_GRACE_SECONDS) * 1000;
  const graceMs = Math.max(0, Math.round(podMs - Math.min(KILL_MARGIN_MS, podMs / 5)));
  const gracePeriod = `${graceMs}ms`;
  // wren.io/proxy-min-drain (an app that shuts down for longer than 5 s, Linkerd's
  // proxy-wait-before-exit-seconds): honoured in both modes, as asked; never past the grace
  // period, which the proxy would refuse at start (a crash-looping sidecar, not a warning).
  const a = pod.metadata?.annotations?.[A.minDrain];
  // Classic: the kubelet runs each container's preStop hook before its SIGTERM, all
  // containers at once (kuberuntime killContainer), so the proxy, which has none, is
  // SIGTERM'd while the app is still in its preStop: an app sleeping 15 s there (the usual
  // wait for endpoint removal) was SIGTERM'd 10 s after the proxy's 5 s minimum drain had
  // closed its outbound, and its own shutdown calls failed. Istio's terminationDrainDuration
  // and Linkerd's proxy-wait-before-exit-seconds are fixed values the user must raise; the
  // sleep is in the spec, so the default covers it: the longest sleep plus the proxy's own
  // 5 s for the app's shutdown after its SIGTERM.
  const sleep = o.nativeSidecars ? undefined : longestPreStopSleep(pod);
  if (a !== undefined) {
    const ms = annotationDuration(a, A.minDrain, warnings);
    if (ms !== undefined && ms > graceMs) {
      warnings.push(`${A.minDrain}: ${JSON.stringify(a)} is longer than the proxy's grace period (${graceMs / 1000}s, from terminationGracePeriodSeconds), so the minimum drain is ${graceMs / 1000}s: raise terminationGracePeriodSeconds`);
      return { gracePeriod, minDrain: gracePeriod };
    }
    if (ms !== undefined) {
      if (sleep && ms < sleep.ms)
        warnings.push(`${A.minDrain}: ${JSON.stringify(a)} is shorter than container ${sleep.container}'s preStop sleep (${sleep.ms / 1000}s): the proxy's outbound closes before that container is even sent SIGTERM`);
      return { gracePeriod, minDrain: `${ms}ms` };
    }
  }
  if (o.nativeSidecars) return { gracePeriod, minDrain: '0s' };
  if (!sleep) return { gracePeriod };
  const wanted = sleep.ms + DEFAULT_MIN_DRAIN_MS;
  if (wanted > graceMs)
    warnings.push(`container ${sleep.container}'s preStop sleep (${sleep.ms / 1000}s) and the app's shutdown after it need a minimum drain of ${wanted / 1000}s, longer than the proxy's grace period (${graceMs / 1000}s, from terminationGracePeriodSeconds), so the proxy's outbound stays up ${graceMs / 1000}s: raise terminationGracePeriodSeconds`);
  return { gracePeriod, minDrain: `${Math.min(wanted, graceMs)}ms` };
}

/** The proxy's own default minimum drain (proxy-config.ts DEFAULT_MIN_DRAIN_MS; Istio's terminationDrainDuration). */
const DEFAULT_MIN_DRAIN_MS = 5000;

/** `sleep 15`, `/bin/sleep 15s`: what a preStop's shell runs first, in seconds (coreutils sleep's plain and `s` forms). */
const SLEEP_WORDS = /^\s*(?:exec\s+)?(?:\/usr)?(?:\/bin\/)?sleep\s+(\d+(?:\.\d+)?)s?(?:\s*(?:$|[;&|]))/;
const SHELLS = /^(?:\/usr)?(?:\/bin\/)?(?:sh|bash|ash|dash)$/;

/**
 * How long an app container's preStop hook holds back its SIGTERM, when the spec says: the
 * `sleep` action (KEP-3960), an exec of `sleep N`, or a shell's `-c "sleep N; ..."`. Other
 * hooks (an httpGet, another command) have no length the injector can read.
 */
function preStopSleepMs(c: V1Container): number | undefined {
  const hook = c.lifecycle?.preStop;
  if (!hook) return undefined;
  const seconds = hook.sleep?.seconds;
  if (typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0) return seconds * 1000;
  const cmd = hook.exec?.command;
  if (!Array.isArray(cmd) || cmd.length === 0) return undefined;
  const [bin, ...args] = cmd;
  let text: string | undefined;
  if (/^(?:\/usr)?(?:\/bin\/)?sleep$/.test(bin) && args.length === 1) text = `sleep ${args[0]}`;
  else if (SHELLS.test(bin) && args.length === 2 && args[0] === '-c') text = args[1];
  const m = text === undefined ? null : SLEEP_WORDS.exec(text);
  return m ? Number(m[1]) * 1000 : undefined;
}

function longestPreStopSleep(pod: V1Pod): { container: string; ms: number } | undefined {
  let best: { container: string; ms: number } | undefined;
  for (const c of pod.spec?.containers ?? []) {
    const ms = preStopSleepMs(c);
    if (ms !== undefined && (!best || ms > best.ms)) best = { container: c.name, ms };
  }
  return best;
}

/**
 * A duration annotation read with the config's one grammar (common/schema.ts duration():
 * "250ms", "1.5s", "5m", "1h"), so a value valid in the proxy's shutdown.minDrainMs is valid
 * here; a bare number is milliseconds, as the config's YAML number is. Malformed: undefined,
 * with a warning naming the annotation and the grammar's own problem.
 */
function annotationDuration(raw: string, key: string, warnings: string[]): number | undefined {
  const text = raw.trim();
  try {
    return duration()(/^\d+(\.\d+)?$/.test(text) ? Number(text) : text, key);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    warnings.push(`${key}: ignoring ${JSON.stringify(raw)} (${e.problem})`);
    return undefined;
  }
}

/**
 * One resource's request and limit from the annotations, as the API server will accept
 * them (apis/core/validation: a quantity >= 0, and a request <= its limit): a malformed or
 * negative value is ignored with a warning (the default applies), so a typo in a tuning
 * annotation never makes the API server refuse the whole pod. A request above the limit
 * loses (the limit is the ceiling the operator set for the node); if even the default
 * request exceeds that limit, the request is the limit (what Kubernetes defaults a missing
 * request to).
 */
function resourcePair(
  ann: Readonly<Record<string, string>>, warnings: string[], name: 'cpu' | 'memory',
  [reqKey, limKey]: readonly [string, string], [reqDefault, limDefault]: readonly [string, string],
): { request: string; limit: string } {
  const q = (key: string, def: string): string => {
    const v = ann[key];
    if (v === undefined) return def;
    const n = quantityValue(v);
    if (n !== undefined && n >= 0) return v;
    warnings.push(`${key}: ignoring ${n === undefined ? 'malformed' : 'negative'} quantity ${JSON.stringify(v)}`);
    return def;
  };
  let request = q(reqKey, reqDefault);
  const limit = q(limKey, limDefault);
  // '' = no limit (ProxyResources).
  const over = () => limit !== '' && quantityValue(request)! > quantityValue(limit)!;
  if (over() && request !== reqDefault) {
    warnings.push(`${reqKey}: ignoring ${JSON.stringify(request)}, above the ${name} limit ${JSON.stringify(limit)}`);
    request = reqDefault;
  }
  if (over()) {
    warnings.push(`${limKey}: ${JSON.stringify(limit)} is below the default ${name} request ${JSON.stringify(request)}; the request is set to the limit`);
    request = limit;
  }
  return { request, limit };
}

/**
 * Decide whether to inject `pod` and, if so, the JSON Patch that does it. Pure: the
 * same pod and options always give the same patch, and a patched pod yields no patch
 * (idempotent: the proxy container and the `wren.io/injected` annotation are markers).
 */
export function injectPod(pod: V1Pod, partial: Partial<InjectOptions> = {}): InjectResult {
  const resolved = resolveInjectOptions(partial);
  const warnings: string[] = [];
  const d = decide(pod, resolved, warnings);
  if (!d.inject) return { patch: [], injected: false, reason: d.reason, warnings };
  // A container of the pod's own with a name the injector adds: the API server would refuse
  // the injected pod for the duplicate name (spec.initContainers[0].name: Duplicate value).
  if ([...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].some((c) => c.name === INIT_CONTAINER)) {
    warnings.push(`container ${INIT_CONTAINER}: the name of the injector's init container; rename it for the pod to be injected`);
    return { patch: [], injected: false, reason: `the pod has a container named ${INIT_CONTAINER}`, warnings };
  }
  // Likewise a volume (spec.volumes[3].name: Duplicate value).
  const ownVolume = (pod.spec!.volumes ?? []).find((v) => INJECTED_VOLUMES.includes(v.name));
  if (ownVolume) {
    warnings.push(`volume ${ownVolume.name}: the name of a volume the injector adds; rename it for the pod to be injected`);
    return { patch: [], injected: false, reason: `the pod has a volume named ${ownVolume.name}`, warnings };
  }
  const o = proxyPort(pod, sidecarMode(pod, resolved, warnings), warnings);
  warnings.push(...unknownAnnotations(pod));
  const spec = pod.spec!;
  const probes = rewriteProbes(pod, o.metricsPort, warnings);
  const ic = interception(pod, warnings, probes.skipInboundPorts);
  warnings.push(...httpHookWarnings(pod, ic.skipInboundPorts));
  const { resources, ...settings } = proxySettings(pod, o, warnings);
  warnings.push(...portClashes(pod, o));
  const asProxy = containersAsProxyUid(pod, o.proxyUid);
  if (asProxy.length > 0)
    warnings.push(`container${asProxy.length > 1 ? 's' : ''} ${asProxy.join(', ')} run${asProxy.length > 1 ? '' : 's'} as UID ${o.proxyUid}, the proxy's UID: ${asProxy.length > 1 ? 'their' : 'its'} outbound traffic bypasses the proxy`);
  const init = buildInitContainer(o, ic);
  const proxy = buildProxyContainer(o, resources, { ...settings, appProbes: probes.env });
  // The probe replacements first: they use the pod's container indices, which the inserts below shift.
  const patch: JsonPatchOp[] = [...probes.patch];

  // Native: [wren-init, wren-proxy, ...app init containers] so app init containers
  // already have a running proxy. Classic: wren-init first, proxy first app container.
  const newInits = o.nativeSidecars ? [init, proxy] : [init];
  if (!spec.initContainers?.length) patch.push({ op: 'add', path: '/spec/initContainers', value: newInits });
  else newInits.forEach((c, i) => patch.push({ op: 'add', path: `/spec/initContainers/${i}`, value: c }));
  if (!o.nativeSidecars) patch.push({ op: 'add', path: '/spec/containers/0', value: proxy });

  const volumes = buildVolumes(o);
  if (!spec.volumes) patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  else for (const v of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: v });

  const marks: Record<string, string> = { [A.injected]: 'true', ...prometheusAnnotations(pod, o), ...defaultContainer(pod, o) };
  if (!pod.metadata?.annotations) {
    if (!pod.metadata) patch.unshift({ op: 'add', path: '/metadata', value: {} });
    patch.push({ op: 'add', path: '/metadata/annotations', value: marks });
  } else for (const [k, v] of Object.entries(marks)) patch.push({ op: 'add', path: `/metadata/annotations/${escapePointer(k)}`, value: v });

  return { patch, injected: true, reason: d.reason, warnings };
}

/** Every wren.io/ annotation something reads on a pod: the injector's, and the control plane's proxy port (translate/k8s-objects.ts). */
const KNOWN_ANNOTATIONS: ReadonlySet<string> = new Set([...Object.values(A), MESH_PROXY_PORT_ANNOTATION]);

/**
 * A wren.io/ annotation nothing reads: a misspelt key (`wren.io/skip-inbound-port`,
 * `wren.io/proxy-memory-limits`) was dropped in silence, the pod injected as if it were not
 * there, its ports redirected or its limit unset. Warned, naming the nearest key (at most
 * 3 edits away), as istioctl analyze warns of unknown Istio annotations.
 */
function unknownAnnotations(pod: V1Pod): string[] {
  const unknown = Object.keys(pod.metadata?.annotations ?? {}).filter((key) => key.startsWith('wren.io/') && !KNOWN_ANNOTATIONS.has(key));
  // Bounded work on the control plane's one thread: a pod may carry ~800 long keys within
  // the API server's 256 KiB, and each suggestion is an edit distance to every known key.
  const out = unknown.slice(0, MAX_UNKNOWN_WARNED).map((key) => {
    let best: { key: string; d: number } | undefined;
    if (key.length <= MAX_SUGGESTED_KEY)
      for (const k of KNOWN_ANNOTATIONS) {
        const d = editDistance(key, k);
        if (d <= 3 && (!best || d < best.d)) best = { key: k, d };
      }
    return `${key}: unknown annotation, ignored${best ? ` (did you mean ${best.key}?)` : ''}`;
  });
  if (unknown.length > MAX_UNKNOWN_WARNED) out.push(`${unknown.length - MAX_UNKNOWN_WARNED} more unknown wren.io/ annotations, ignored`);
  return out;
}

const MAX_UNKNOWN_WARNED = 10;
/** Longer keys get no suggestion: every known key is under 40 characters, and 3 edits cannot bridge the rest. */
const MAX_SUGGESTED_KEY = 48;

/** Levenshtein distance (insert, delete, substitute), for the suggestion above; keys are short. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The pod's wren.io/sidecar-mode over the injector's nativeSidecars (--sidecar-mode), as
 * Istio's sidecar.istio.io/nativeSidecar overrides its ENABLE_NATIVE_SIDECARS: one workload
 * can go classic (a cluster whose nodes are older than its API server, software that
 * expects the proxy among spec.containers) or native while the rest stays as installed.
 */
function sidecarMode(pod: V1Pod, o: InjectOptions, warnings: string[]): InjectOptions {
  const v = pod.metadata?.annotations?.[A.sidecarMode];
  if (v === undefined) return o;
  if (v !== 'native' && v !== 'classic') {
    warnings.push(`${A.sidecarMode}: ignoring ${JSON.stringify(v)} (expected native or classic); the injector's ${o.nativeSidecars ? 'native' : 'classic'} mode applies`);
    return o;
  }
  // The annotation wins, but on a cluster --sidecar-mode auto read as older than 1.29 the
  // pod's creator is told what it asked for (docs/kubernetes.md, Choosing the sidecar mode).
  if (v === 'native' && o.olderThanNativeSidecars !== undefined)
    warnings.push(`${A.sidecarMode}: native on Kubernetes ${o.olderThanNativeSidecars}, older than 1.29: its API server refuses an init container with probes (FailedCreate) unless the SidecarContainers feature gate is on; annotate classic, or remove the annotation for the injector's classic mode`);
  return Object.freeze({ ...o, nativeSidecars: v === 'native' });
}

/**
 * wren.io/proxy-port: the port the pod's proxy takes inbound connections on. The control
 * plane sends peers to it before the sidecar's `wren-inbound` container port
 * (translate/k8s-objects.ts), so the injector makes the sidecar it adds listen there: the
 * proxy's WREN_INBOUND_PORT, its container port and the init container's redirect, as
 * Linkerd's config.linkerd.io/proxy-inbound-port moves its proxy. Until 2026-12-07 (adv64)
 * the injector read it only to know the key: the sidecar listened on 15006 while the
 * control plane told every peer the annotated port, where nothing listened. A value the
 * control plane reads as no port, or one of the proxy's other ports, is warned and left.
 */
function proxyPort(pod: V1Pod, o: InjectOptions, warnings: string[]): InjectOptions {
  const v = pod.metadata?.annotations?.[MESH_PROXY_PORT_ANNOTATION];
  if (v === undefined) return o;
  // Number(), as the control plane reads it: the two agree on every value.
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    warnings.push(`${MESH_PROXY_PORT_ANNOTATION}: ignoring ${JSON.stringify(v)} (expected a port number 1-65535); the proxy listens on ${o.inboundPort}`);
    return o;
  }
  const other = ([['outbound', o.outboundPort], ['admin', o.adminPort], ['metrics', o.metricsPort]] as const).find(([, p]) => p === n);
  if (other) {
    warnings.push(`${MESH_PROXY_PORT_ANNOTATION}: ignoring ${n}, the proxy's ${other[0]} port; the proxy listens on ${o.inboundPort}: remove the annotation or choose another port`);
    return o;
  }
  return n === o.inboundPort ? o : Object.freeze({ ...o, inboundPort: n });
}

/**
 * kubelet's httpGet lifecycle hooks (postStart, preStop) go from the node to the pod IP
 * like its probes, so the inbound redirect hands them to the sidecar, which refuses
 * plaintext under STRICT mTLS, Wren's default: a failed postStart kills the container, a
 * failed preStop is logged and SIGTERM follows at once, with no graceful shutdown. Istio
 * rewrites them to its status port like probes (prestopz, poststartz); Wren does not,
 * because its metrics port answers the whole cluster, and a hook is an action (often the
 * app's shutdown) anyone could then trigger past mTLS and authorization. So they are left
 * as they are and warned about, unless their port skips the redirect (or they name a host).
 */
function httpHookWarnings(pod: V1Pod, skipInbound: readonly string[]): string[] {
  const skipped = (port: number) => skipInbound.some((r) => {
    const [lo, hi = lo] = r.split(':').map(Number);
    return port >= lo && port <= hi;
  });
  const out: string[] = [];
  const hooked = [...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always'), ...(pod.spec?.containers ?? [])];
  for (const c of hooked)
    for (const hook of ['postStart', 'preStop'] as const) {
      const get = c.lifecycle?.[hook]?.httpGet;
      if (!get || (get.host ?? '') !== '') continue;
      const raw = get.port as number | string;
      const port = typeof raw === 'number' ? raw : /^\d+$/.test(raw) ? Number(raw) : c.ports?.find((p) => p.name === raw)?.containerPort;
      if (port !== undefined && skipped(port)) continue;
      out.push(`container ${c.name} ${hook} httpGet on port ${JSON.stringify(raw)}: kubelet's plaintext, which STRICT mTLS refuses${hook === 'postStart' ? ' (the container is killed)' : ' (SIGTERM follows at once)'}; use an exec or sleep hook, or ${A.skipInboundPorts}`);
    }
  return out;
}

/**
 * Container ports the proxy binds in the pod's shared network namespace (Istio lists its
 * 15000-15090 as reserved for the same reason): the app's listener and the proxy's cannot
 * both bind, so one of them fails with EADDRINUSE (the app, as the native sidecar starts
 * first), and inbound connections to such a port reach the proxy, which never redirects
 * its own ports. Warned, not refused, like the other settings a pod gets wrong.
 */
function portClashes(pod: V1Pod, o: InjectOptions): string[] {
  const own = new Map<number, string>([[o.inboundPort, 'inbound'], [o.outboundPort, 'outbound'], [o.adminPort, 'admin'], [o.metricsPort, 'metrics']]);
  const out: string[] = [];
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])])
    for (const p of c.ports ?? []) {
      const what = own.get(p.containerPort);
      if (what !== undefined && (p.protocol ?? 'TCP') === 'TCP')
        out.push(`container ${c.name} port ${p.containerPort} is the proxy's ${what} port: one of the two cannot listen on it, and connections to it reach the proxy`);
    }
  return out;
}

/**
 * The pod's containers that run as the proxy's UID, whose outbound traffic the owner match
 * of `wren iptables` lets past the redirect (Istio's 1337, Linkerd's 2102 caveat). A
 * container's own runAsUser wins over the pod's (the API's rule); init containers count,
 * the app's native sidecars for their whole life and the others while they run, in
 * native mode after the proxy has started.
 */
function containersAsProxyUid(pod: V1Pod, uid: number): string[] {
  const podUid = pod.spec?.securityContext?.runAsUser;
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]
    .filter((c) => (c.securityContext?.runAsUser ?? podUid) === uid)
    .map((c) => c.name);
}

/**
 * Classic mode makes the proxy spec.containers[0], the container `kubectl logs`, `exec`
 * and `cp` pick without `-c`: the annotation kubectl reads first (KEP-2227) names the app's
 * first container instead, as Istio's injector sets it (since 1.10, istio/istio#31180;
 * its holdApplicationUntilProxyStarts puts its proxy first too). Native sidecars are init containers and leave
 * containers[0] the app's, so nothing is added then; a pod that names one keeps it.
 */
function defaultContainer(pod: V1Pod, o: InjectOptions): Record<string, string> {
  const first = pod.spec?.containers[0]?.name;
  if (o.nativeSidecars || first === undefined || pod.metadata?.annotations?.[KUBECTL_DEFAULT_CONTAINER] !== undefined) return {};
  return { [KUBECTL_DEFAULT_CONTAINER]: first };
}

const KUBECTL_DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';

/**
 * The annotations Prometheus' usual kubernetes_sd relabelling reads (Istio adds the
 * same three for its 15020). A pod that already sets any prometheus.io/* annotation
 * keeps them untouched and gets none of ours: they describe the app's own metrics,
 * and one pod has one such set (Istio then merges the app's metrics into 15020; Wren
 * does not, so the operator scrapes the sidecar by its `wren-metrics` port instead).
 */
function prometheusAnnotations(pod: V1Pod, o: InjectOptions): Record<string, string> {
  if (Object.keys(pod.metadata?.annotations ?? {}).some((k) => k.startsWith('prometheus.io/'))) return {};
  return { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(o.metricsPort), 'prometheus.io/path': '/stats/prometheus' };
}
