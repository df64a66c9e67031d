import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { ConfigError } from '../../common/schema.js';
import { appProbePath, parseAppProbe, type AppProbeKind, type AppProbeSpec } from '../../contract/app-probes.js';
import { A } from './annotations.js';
import type { JsonPatchOp } from './json-patch.js';

/**
 * Kubelet probes rewritten to the sidecar, as Istio's injector does (inject/app_probe.go,
 * `sidecar.istio.io/rewriteAppHTTPProbers`, on by default since Istio 1.10). kubelet probes
 * from the node to the pod IP; the inbound redirect would hand that to the sidecar, which
 * demands mTLS kubelet does not speak. Leaving the probed port out of the redirect (what
 * Wren did before) opened that port, usually the app's API port, to plaintext from the
 * whole cluster, past mTLS and AuthorizationPolicy. Instead each httpGet, tcpSocket and
 * grpc probe of an app container (and of the app's native sidecars, init containers with
 * restartPolicy Always, which kubelet probes alike: KEP-753) becomes an httpGet on the
 * sidecar's metrics port, `/app-health/<container>/<livez|readyz|startupz>`, with the
 * probe's timing fields kept; the original goes to the proxy in WREN_APP_PROBES
 * (contract/app-probes.ts) and the proxy runs it against the app (proxy/admin/app-prober.ts).
 *
 * Left as they are: exec probes (they run in the container), and httpGet/tcpSocket probes
 * with a `host` (kubelet connects to that host, not through this pod's redirect). A probe
 * whose named port the container does not declare is left as is with a warning: kubelet
 * fails it with or without the mesh.
 *
 * `wren.io/rewrite-app-probes: "false"` keeps the old way: the probe ports are skipped by
 * the inbound redirect, with a warning that they bypass mTLS and authorization. A probe
 * the proxy could not run as written (a header value with a line break) falls back to that too.
 */
export interface ProbeRewrite {
  /** `replace` ops on the probes, with the pod's own container indices: apply them before any insert. */
  readonly patch: JsonPatchOp[];
  /** The WREN_APP_PROBES value; '' when nothing was rewritten. */
  readonly env: string;
  /** Ports kubelet must still reach directly (opt-out or fallback), ascending. */
  readonly skipInboundPorts: readonly number[];
}

const FIELDS = [['livenessProbe', 'livez'], ['readinessProbe', 'readyz'], ['startupProbe', 'startupz']] as const satisfies readonly (readonly [keyof V1Container, AppProbeKind])[];

/** The probe's port as a number: numeric, a numeric string, or the name of one of the container's ports. */
function resolvePort(c: V1Container, port: number | string): number | undefined {
  const n = typeof port === 'number' ? port : /^\d+$/.test(port) ? Number(port) : c.ports?.find((p) => p.name === port)?.containerPort;
  return n !== undefined && Number.isInteger(n) && n > 0 && n <= 65535 ? n : undefined;
}

/**
 * The request target kubelet sends for `path` (pkg/probe/http formatURL, Go's url): a
 * leading `/` added, the fragment dropped, bytes outside visible ASCII percent-encoded.
 */
function probeTarget(path: string | undefined): string {
  const p = (path ?? '').split('#')[0];
  const rooted = p.startsWith('/') ? p : `/${p}`;
  return rooted.replace(/[^\x21-\x7e]/gu, (ch) => [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/** The original probe as the proxy will run it; undefined for probes left to kubelet. */
function specOf(p: V1Probe, port: number): AppProbeSpec | undefined {
  const timeoutSeconds = Math.max(1, p.timeoutSeconds ?? 1);
  if (p.httpGet) {
    const headers = (p.httpGet.httpHeaders ?? []).map((h) => ({ name: h.name, value: h.value }));
    return { kind: 'http', port, path: probeTarget(p.httpGet.path), scheme: (p.httpGet.scheme ?? 'HTTP') as 'HTTP', ...(headers.length ? { httpHeaders: headers } : {}), timeoutSeconds };
  }
  if (p.tcpSocket) return { kind: 'tcp', port, timeoutSeconds };
  if (p.grpc) return { kind: 'grpc', port, ...(p.grpc.service ? { service: p.grpc.service } : {}), timeoutSeconds };
  return undefined;
}

/** Whether the pod wants its probes rewritten (default yes); a malformed value warns and keeps the default. */
function rewriteWanted(pod: V1Pod, warnings: string[]): boolean {
  const v = pod.metadata?.annotations?.[A.rewriteAppProbes];
  if (v === undefined || v === 'true') return true;
  if (v === 'false') return false;
  warnings.push(`${A.rewriteAppProbes}: ignoring ${JSON.stringify(v)} (expected true or false); probes are rewritten`);
  return true;
}

export function rewriteProbes(pod: V1Pod, metricsPort: number, warnings: string[]): ProbeRewrite {
  const rewrite = rewriteWanted(pod, warnings);
  const probed: { c: V1Container; at: string }[] = [
    ...(pod.spec?.initContainers ?? []).map((c, i) => ({ c, at: `/spec/initContainers/${i}` })).filter(({ c }) => c.restartPolicy === 'Always'),
    ...(pod.spec?.containers ?? []).map((c, i) => ({ c, at: `/spec/containers/${i}` })),
  ];
  const patch: JsonPatchOp[] = [];
  const probes: Record<string, AppProbeSpec> = {};
  const skip = new Set<number>();
  const fallback = new Set<number>();
  for (const { c, at } of probed) {
    for (const [field, kind] of FIELDS) {
      const p = c[field] as V1Probe | undefined;
      const handler = p?.httpGet ?? p?.tcpSocket ?? p?.grpc;
      if (!p || !handler || p.exec) continue;
      if ((p.httpGet?.host ?? p.tcpSocket?.host ?? '') !== '') continue;
      const port = resolvePort(c, handler.port as number | string);
      if (port === undefined) {
        warnings.push(`container ${c.name} ${field}: port ${JSON.stringify(handler.port)} is not one of the container's ports; the probe is left as is (kubelet fails it)`);
        continue;
      }
      if (!rewrite) {
        skip.add(port);
        continue;
      }
      const spec = specOf(p, port)!;
      const path = appProbePath(c.name, kind);
      try {
        parseAppProbe(spec, path);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        warnings.push(`container ${c.name} ${field}: cannot be run by the proxy (${e.message}); its port ${port} is left out of the inbound redirect instead, open to plaintext past mTLS and authorization`);
        fallback.add(port);
        continue;
      }
      probes[path] = spec;
      // Everything but the handler stays: periodSeconds, timeoutSeconds, thresholds, initialDelaySeconds, terminationGracePeriodSeconds.
      const { httpGet: _h, tcpSocket: _t, grpc: _g, ...timing } = p;
      patch.push({ op: 'replace', path: `${at}/${field}`, value: { ...timing, httpGet: { path, port: metricsPort, scheme: 'HTTP' } } });
    }
  }
  const bypass = [...new Set([...skip, ...fallback])].sort((a, b) => a - b);
  if (skip.size > 0)
    warnings.push(`${A.rewriteAppProbes} "false": probe ports ${[...skip].sort((a, b) => a - b).join(',')} skip the sidecar, open to plaintext from the cluster without mTLS or authorization`);
  return { patch, env: Object.keys(probes).length ? JSON.stringify(probes) : '', skipInboundPorts: bypass };
}
