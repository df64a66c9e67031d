import type { V1Container, V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { injectPod } from './inject-pod.js';
import { mutate } from './admission.js';
import { applyPatch, type JsonPatchOp } from './json-patch.js';
import { proxyConfigFromEnv } from '../../proxy/config/proxy-config.js';
import { iptablesCommand } from '../../cli/iptables.js';
import { duration } from '../../common/schema.js';
import { parsePod } from '../translate/k8s-objects.js';

/** Apply with the real fast-json-patch library (validating every op), not our own applier. */
const apply = (pod: V1Pod, patch: JsonPatchOp[]): V1Pod =>
  fjp.applyPatch(structuredClone(pod), patch as fjp.Operation[], true, false).newDocument;

function pod(extra: { labels?: Record<string, string>; annotations?: Record<string, string>; spec?: Partial<V1Pod['spec']> } = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'web-1',
      namespace: 'demo',
      ...(extra.labels ? { labels: extra.labels } : {}),
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: {
      serviceAccountName: 'web',
      containers: [
        {
          name: 'app',
          image: 'web:1',
          ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9090 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' as unknown as number } },
          livenessProbe: { tcpSocket: { port: 8081 as unknown as number } },
        },
      ],
      ...(extra.spec ?? {}),
    } as V1Pod['spec'],
  };
}

const find = (list: V1Container[] | undefined, name: string) => list?.find((c) => c.name === name);
const argAfter = (args: string[] | undefined, flag: string) => args?.[args.indexOf(flag) + 1];

describe('injectPod decisions', () => {
  test('pod label enabled injects, with the injected annotation', () => {
    const r = injectPod(pod({ labels: { 'wren.io/inject': 'enabled' } }), { namespaceLabels: {} });
    expect(r.injected).toBe(true);
    expect(r.reason).toMatch(/pod has wren.io\/inject: enabled/);
    const out = apply(pod({ labels: { 'wren.io/inject': 'enabled' } }), r.patch);
    expect(out.metadata?.annotations?.['wren.io/injected']).toBe('true');
  });

  test('namespace label enabled injects; unlabelled namespace does not', () => {
    expect(injectPod(pod(), { namespaceLabels: { 'wren.io/inject': 'enabled' } }).injected).toBe(true);
    const r = injectPod(pod(), { namespaceLabels: { team: 'a' } });
    expect(r).toMatchObject({ injected: false, reason: 'not opted in', patch: [] });
  });

  test('pod annotation opts in too, and pod-level disabled beats an enabled namespace', () => {
    expect(injectPod(pod({ annotations: { 'wren.io/inject': 'enabled' } }), { namespaceLabels: {} }).injected).toBe(true);
    const r = injectPod(pod({ labels: { 'wren.io/inject': 'disabled' } }), { namespaceLabels: { 'wren.io/inject': 'enabled' } });
    expect(r).toMatchObject({ injected: false, patch: [] });
    expect(r.reason).toMatch(/disabled/);
  });

  test('a disabled namespace beats a pod that opts in', () => {
    const r = injectPod(pod({ labels: { 'wren.io/inject': 'enabled' } }), { namespaceLabels: { 'wren.io/inject': 'disabled' } });
    expect(r).toMatchObject({ injected: false, reason: 'namespace has wren.io/inject: disabled', patch: [] });
  });

  test('a pod value that is neither enabled nor disabled ("false", Istio\'s spelling) opts out, warned; in a cluster the namespace webhook sends it', () => {
    for (const v of ['false', 'off', 'Disabled', 'no']) {
      for (const where of ['labels', 'annotations'] as const) {
        const p = pod({ [where]: { 'wren.io/inject': v } });
        for (const r of [injectPod(p), injectPod(p, { namespaceLabels: { 'wren.io/inject': 'enabled' } })]) {
          expect([v, where, r.injected, r.patch]).toEqual([v, where, false, []]);
          expect(r.reason).toBe(`pod has wren.io/inject: ${JSON.stringify(v)}, not enabled`);
          expect(r.warnings).toEqual([`wren.io/inject: ${JSON.stringify(v)} is neither enabled nor disabled; the pod is not injected`]);
        }
      }
    }
    // The AdmissionReview carries the warning to kubectl.
    const review = mutate({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', operation: 'CREATE', object: pod({ labels: { 'wren.io/inject': 'false' } }) } });
    expect(review.response).toEqual({ uid: 'u', allowed: true, patchType: 'JSONPatch', patch: expect.any(String), warnings: ['wren.io/inject: "false" is neither enabled nor disabled; the pod is not injected'] });
    // Its only op keeps the warning on the pod (wren.io/inject-warnings), for a controller's pod whose warnings nobody sees.
    expect(JSON.parse(Buffer.from(review.response!.patch!, 'base64').toString('utf8'))).toEqual([
      { op: 'add', path: '/metadata/annotations', value: { 'wren.io/inject-warnings': 'wren.io/inject: "false" is neither enabled nor disabled; the pod is not injected' } },
    ]);
    // An empty value is no setting (as Istio reads it): the namespace decides.
    expect(injectPod(pod({ labels: { 'wren.io/inject': '' } }), { namespaceLabels: { 'wren.io/inject': 'enabled' } })).toMatchObject({ injected: true, warnings: [] });
  });

  test('a namespace value that is neither is unset, as the webhooks\' selectors read it, warned', () => {
    const r = injectPod(pod(), { namespaceLabels: { 'wren.io/inject': 'true' } });
    expect(r).toMatchObject({ injected: false, reason: 'not opted in', warnings: ['namespace label wren.io/inject: ignoring "true" (expected enabled or disabled)'] });
    expect(injectPod(pod({ labels: { 'wren.io/inject': 'enabled' } }), { namespaceLabels: { 'wren.io/inject': 'true' } }).injected).toBe(true);
  });

  test('without namespace labels (webhook mode) the selectors already decided', () => {
    expect(injectPod(pod()).injected).toBe(true);
    expect(injectPod(pod({ annotations: { 'wren.io/inject': 'disabled' } })).injected).toBe(false);
  });

  test('already injected pods get no patch: by container name or by annotation', () => {
    const once = apply(pod(), injectPod(pod()).patch);
    expect(injectPod(once)).toMatchObject({ injected: false, reason: 'already injected', patch: [] });
    expect(injectPod(pod({ annotations: { 'wren.io/injected': 'true' } })).patch).toEqual([]);
    const classic = apply(pod(), injectPod(pod(), { nativeSidecars: false }).patch);
    expect(injectPod(classic, { nativeSidecars: false }).patch).toEqual([]);
  });

  test('a static pod\'s mirror is never injected: kubelet runs the node\'s manifest, not the API object', () => {
    const mirror = pod({ labels: { 'wren.io/inject': 'enabled' }, annotations: { 'kubernetes.io/config.mirror': '2c1b6a0e6d0f', 'kubernetes.io/config.source': 'file' } });
    expect(injectPod(mirror)).toMatchObject({ injected: false, reason: 'a static pod\'s mirror: kubelet runs the node\'s manifest, not this spec', patch: [] });
  });

  test('a Windows pod (spec.os.name) is never injected: the API server would refuse the Linux security settings of the proxy and wren-init', () => {
    const win = pod({ labels: { 'wren.io/inject': 'enabled' }, spec: { os: { name: 'windows' } } });
    expect(injectPod(win)).toMatchObject({ injected: false, reason: 'spec.os.name is windows: the proxy runs on Linux only', patch: [] });
    expect(injectPod(pod({ spec: { os: { name: 'linux' } } })).injected).toBe(true);
  });

  test('a pod that selects Windows nodes (nodeSelector kubernetes.io/os, without spec.os) is never injected: a Windows node cannot run the Linux proxy', () => {
    const win = pod({ labels: { 'wren.io/inject': 'enabled' }, spec: { nodeSelector: { 'kubernetes.io/os': 'windows' } } });
    expect(injectPod(win)).toMatchObject({ injected: false, reason: 'nodeSelector kubernetes.io/os is windows: the proxy runs on Linux only', patch: [] });
    expect(injectPod(pod({ spec: { nodeSelector: { 'kubernetes.io/os': 'linux', disk: 'ssd' } } })).injected).toBe(true);
  });

  test('a pod with its own container named wren-init, or a volume named as one the injector adds, is not injected, warned: the API server would refuse the duplicate name', () => {
    for (const spec of [{ initContainers: [{ name: 'wren-init', image: 'x' }] }, { containers: [{ name: 'app', image: 'a' }, { name: 'wren-init', image: 'x' }] }]) {
      const r = injectPod(pod({ spec }));
      expect(r).toMatchObject({ injected: false, reason: 'the pod has a container named wren-init', patch: [] });
      expect(r.warnings).toEqual(['container wren-init: the name of the injector\'s init container; rename it for the pod to be injected']);
    }
    const vol = injectPod(pod({ spec: { volumes: [{ name: 'data', emptyDir: {} }, { name: 'wren-proxy-run', emptyDir: {} }] } }));
    expect(vol).toMatchObject({ injected: false, reason: 'the pod has a volume named wren-proxy-run', patch: [], warnings: ['volume wren-proxy-run: the name of a volume the injector adds; rename it for the pod to be injected'] });
    // Not asked to be injected: nothing to say.
    expect(injectPod(pod({ labels: { 'wren.io/inject': 'disabled' }, spec: { initContainers: [{ name: 'wren-init', image: 'x' }] } })).warnings).toEqual([]);
  });

  test('hostNetwork pods are never injected', () => {
    expect(injectPod(pod({ spec: { hostNetwork: true } })).injected).toBe(false);
  });
});

describe('injected pod (native sidecar)', () => {
  const p = pod({ annotations: { team: 'x' }, spec: { initContainers: [{ name: 'migrate', image: 'm:1' }], volumes: [{ name: 'data', emptyDir: {} }] } });
  const out = apply(p, injectPod(p).patch);
  const proxy = find(out.spec?.initContainers, 'wren-proxy')!;
  const init = find(out.spec?.initContainers, 'wren-init')!;

  test('init order: wren-init, wren-proxy, then the app init containers; app containers untouched but for their probes', () => {
    expect(out.spec?.initContainers?.map((c) => c.name)).toEqual(['wren-init', 'wren-proxy', 'migrate']);
    const { readinessProbe: _r, livenessProbe: _l, ...rest } = out.spec!.containers[0];
    const { readinessProbe: _r0, livenessProbe: _l0, ...rest0 } = p.spec!.containers[0];
    expect(out.spec?.containers).toHaveLength(1);
    expect(rest).toEqual(rest0);
    expect(out.metadata?.annotations).toEqual({
      team: 'x', 'wren.io/injected': 'true',
      // Prometheus' kubernetes_sd finds the sidecar's scrape port (Istio's annotations for 15020).
      'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus',
    });
  });

  test('a pod with its own prometheus.io/* annotations keeps them and gets none of ours', () => {
    const app = pod({ annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' } });
    expect(apply(app, injectPod(app).patch).metadata?.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'wren.io/injected': 'true' });
    const bare = pod({});
    expect(apply(bare, injectPod(bare).patch).metadata?.annotations).toMatchObject({ 'prometheus.io/port': '15020' });
  });

  test('the proxy exposes the metrics port (wren-metrics 15020) and is told it (WREN_METRICS_PORT)', () => {
    expect(proxy.ports).toContainEqual({ name: 'wren-metrics', containerPort: 15020, protocol: 'TCP' });
    expect(proxy.env).toContainEqual({ name: 'WREN_METRICS_PORT', value: '15020' });
  });

  test('proxy is a native sidecar gated by a startup probe on the admin /ready', () => {
    expect(proxy.restartPolicy).toBe('Always');
    expect(proxy.startupProbe?.exec?.command).toEqual(['node', '/app/dist/cli/wren.js', 'proxy', 'await', '--admin-port', '15000', '--timeout', '2s']);
    expect(proxy.lifecycle).toBeUndefined();
    expect(proxy.image).toBe('wren:0.1.0');
    expect(proxy.args).toEqual(['proxy']);
  });

  test('after start-up kubelet keeps probing the proxy\'s readiness, on the metrics port (the admin port is loopback-only)', () => {
    expect(proxy.readinessProbe).toEqual({ httpGet: { path: '/healthz/ready', port: 15020, scheme: 'HTTP' }, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 });
    const classic = apply(pod(), injectPod(pod(), { nativeSidecars: false, metricsPort: 16020 }).patch).spec!.containers[0];
    expect(classic.readinessProbe?.httpGet).toEqual({ path: '/healthz/ready', port: 16020, scheme: 'HTTP' });
  });

  test('proxy runs as UID 2102, locked down, with default resources', () => {
    expect(proxy.securityContext).toMatchObject({ runAsUser: 2102, runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(proxy.resources).toEqual({ requests: { cpu: '10m', memory: '20Mi' } });
  });

  test('identity env comes from the downward API', () => {
    const env = Object.fromEntries((proxy.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({
      POD_NAME: 'metadata.name',
      POD_NAMESPACE: 'metadata.namespace',
      WREN_SERVICE_ACCOUNT: 'spec.serviceAccountName',
      WREN_TRUST_DOMAIN: 'cluster.local',
      WREN_CONTROL_PLANE: 'wren-control-plane.wren-system.svc:15010',
      WREN_LOG_LEVEL: 'info',
      WREN_TOKEN_FILE: '/var/run/secrets/wren.io/identity/token',
    });
  });

  test('projected token volume (audience wren-identity, 1h) is appended and mounted into the proxy', () => {
    expect(out.spec?.volumes?.[0].name).toBe('data');
    const tok = out.spec?.volumes?.find((v) => v.name === 'wren-identity-token');
    expect(tok?.projected?.sources?.[0].serviceAccountToken).toEqual({ audience: 'wren-identity', expirationSeconds: 3600, path: 'token' });
    expect(proxy.volumeMounts).toContainEqual({ name: 'wren-identity-token', mountPath: '/var/run/secrets/wren.io/identity', readOnly: true });
  });

  test('wren-init runs wren iptables as root with only NET_ADMIN and NET_RAW', () => {
    // --admin-port, --metrics-port: connections to the proxy's own ports on the pod IP reach the proxy, not the inbound redirect.
    expect(init.args?.slice(0, 12)).toEqual(['iptables', '--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001', '--admin-port', '15000', '--metrics-port', '15020', '--ipv6']);
    expect(init.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false, privileged: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } });
    expect(init.restartPolicy).toBeUndefined();
  });

  test('wren-init has a CPU and a memory limit, so a namespace whose ResourceQuota covers limits accepts it (the proxy\'s come from wren.io/proxy-*-limit)', () => {
    expect(init.resources).toEqual({ requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '1', memory: '128Mi' } });
  });

  test('app probes (named and numeric ports) go to the sidecar\'s metrics port; no probe port skips the inbound redirect', () => {
    expect(out.spec!.containers[0].readinessProbe).toEqual({ httpGet: { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' } });
    expect(out.spec!.containers[0].livenessProbe).toEqual({ httpGet: { path: '/app-health/app/livez', port: 15020, scheme: 'HTTP' } });
    expect(JSON.parse(proxy.env!.find((e) => e.name === 'WREN_APP_PROBES')!.value!)).toEqual({
      '/app-health/app/readyz': { kind: 'http', port: 8080, path: '/ready', scheme: 'HTTP', timeoutSeconds: 1 },
      '/app-health/app/livez': { kind: 'tcp', port: 8081, timeoutSeconds: 1 },
    });
    // The ports stay behind the sidecar: mTLS and authorization for every caller but the sidecar's own probes.
    expect(init.args).not.toContain('--skip-inbound-ports');
  });

  test('the sidecar it configures serves the rewritten probes: its env, as the proxy reads it, keeps the metrics listener on at the port kubelet probes', () => {
    // What the downward API gives the proxy at run time.
    const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'demo', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
    const withBundle = apply(p, injectPod(p, { trustBundlePem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' }).patch);
    const sidecar = find(withBundle.spec?.initContainers, 'wren-proxy')!;
    const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value ?? downward[e.valueFrom!.fieldRef!.fieldPath]]));
    const config = proxyConfigFromEnv(env);
    expect([...config.appProbes.keys()].sort()).toEqual(['/app-health/app/livez', '/app-health/app/readyz']);
    // No annotation and no variable turns the metrics listener off (the proxy refuses appProbes without it).
    expect(config.listeners.metrics.enabled).toBe(true);
    expect(config.listeners.metrics.port).toBe(withBundle.spec!.containers[0].readinessProbe!.httpGet!.port);
  });
});

describe('the sidecar\'s drain (shutdown.gracePeriodMs, shutdown.minDrainMs) from the pod', () => {
  const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'demo', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
  const bundle = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  /** The proxy container's config, as the proxy reads its env at run time. */
  const shutdownOf = (p: V1Pod, nativeSidecars: boolean) => {
    const out = apply(p, injectPod(p, { nativeSidecars, trustBundlePem: bundle }).patch);
    const c = [...(out.spec?.initContainers ?? []), ...(out.spec?.containers ?? [])].find((x) => x.name === 'wren-proxy')!;
    return proxyConfigFromEnv(Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? downward[e.valueFrom!.fieldRef!.fieldPath]]))).shutdown;
  };

  test('the drain ends before the kubelet\'s SIGKILL: the pod\'s terminationGracePeriodSeconds less 5 s (less a fifth under 25 s); 30 s when unset', () => {
    expect(shutdownOf(pod(), false).gracePeriodMs).toBe(25_000);
    expect(shutdownOf(pod({ spec: { terminationGracePeriodSeconds: 120 } }), false).gracePeriodMs).toBe(115_000);
    expect(shutdownOf(pod({ spec: { terminationGracePeriodSeconds: 10 } }), false).gracePeriodMs).toBe(8000);
    expect(shutdownOf(pod({ spec: { terminationGracePeriodSeconds: 0 } }), false).gracePeriodMs).toBe(0);
  });

  test('classic: the outbound keeps serving the app (SIGTERM\'d with it) for the 5 s minimum drain, or the grace period when shorter', () => {
    expect(shutdownOf(pod(), false).minDrainMs).toBe(5000);
    expect(shutdownOf(pod({ spec: { terminationGracePeriodSeconds: 5 } }), false)).toEqual({ gracePeriodMs: 4000, minDrainMs: 4000 });
  });

  test('native: no minimum drain, the app containers have exited before the kubelet stops the sidecar', () => {
    expect(shutdownOf(pod(), true)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 0 });
  });

  test('wren.io/proxy-min-drain sets it in either mode; past the grace period it is the grace period, with a warning; malformed, ignored with a warning', () => {
    const annotated = (v: string, spec: Partial<V1Pod['spec']> = {}) => pod({ annotations: { 'wren.io/proxy-min-drain': v }, spec });
    expect(shutdownOf(annotated('20s'), false)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 20_000 });
    expect(shutdownOf(annotated('1500ms'), true)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 1500 });
    const long = annotated('40s');
    expect(injectPod(long, { nativeSidecars: false }).warnings).toContainEqual(expect.stringMatching(/^wren\.io\/proxy-min-drain: "40s" is longer than the proxy's grace period \(25s/));
    expect(shutdownOf(long, false)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 25_000 });
    expect(shutdownOf(annotated('40s', { terminationGracePeriodSeconds: 60 }), false)).toEqual({ gracePeriodMs: 55_000, minDrainMs: 40_000 });
    for (const bad of ['soon', '-1s', '2 s', '5d', '']) {
      expect(injectPod(annotated(bad), { nativeSidecars: false }).warnings).toContainEqual(`wren.io/proxy-min-drain: ignoring ${JSON.stringify(bad)} (expected a duration like "250ms", "1s", "5m" or milliseconds, got ${JSON.stringify(bad.trim())})`);
      expect(shutdownOf(annotated(bad), false).minDrainMs).toBe(5000);
    }
  });

  test('classic: an app container\'s preStop sleep (which holds back its SIGTERM, not the proxy\'s) is added to the minimum drain; capped at the grace period with a warning', () => {
    const hooked = (preStop: object, spec: Partial<V1Pod['spec']> = {}, annotations?: Record<string, string>) => {
      const p = pod({ spec, ...(annotations ? { annotations } : {}) });
      p.spec!.containers.push({ name: 'worker', image: 'w:1', lifecycle: { preStop } as V1Container['lifecycle'] });
      return p;
    };
    // kubelet runs the app's 15 s sleep, then SIGTERMs it; the app's own shutdown (5 s, the proxy's default) follows.
    expect(shutdownOf(hooked({ sleep: { seconds: 15 } }), false)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 20_000 });
    expect(shutdownOf(hooked({ exec: { command: ['sleep', '10'] } }), false).minDrainMs).toBe(15_000);
    expect(shutdownOf(hooked({ exec: { command: ['/bin/sh', '-c', 'sleep 12s && kill -TERM 1'] } }), false).minDrainMs).toBe(17_000);
    // A hook whose length cannot be read leaves the proxy's default.
    expect(shutdownOf(hooked({ exec: { command: ['/app/stop'] } }), false).minDrainMs).toBe(5000);
    expect(shutdownOf(hooked({ exec: { command: ['sh', '-c', 'curl -X POST localhost/stop; sleep 5'] } }), false).minDrainMs).toBe(5000);
    // Past the grace period: the grace period, with a warning naming the container.
    const long = hooked({ sleep: { seconds: 25 } });
    expect(shutdownOf(long, false)).toEqual({ gracePeriodMs: 25_000, minDrainMs: 25_000 });
    expect(injectPod(long, { nativeSidecars: false }).warnings).toContainEqual(expect.stringMatching(/^container worker's preStop sleep \(25s\) and the app's shutdown after it need a minimum drain of 30s, longer than the proxy's grace period \(25s/));
    expect(shutdownOf(hooked({ sleep: { seconds: 25 } }, { terminationGracePeriodSeconds: 60 }), false).minDrainMs).toBe(30_000);
    // Native: the kubelet stops the sidecar only after the app containers exited, preStop included.
    expect(shutdownOf(hooked({ sleep: { seconds: 15 } }), true).minDrainMs).toBe(0);
    // The annotation wins, warned when shorter than the sleep.
    const shortAnn = hooked({ sleep: { seconds: 15 } }, {}, { 'wren.io/proxy-min-drain': '8s' });
    expect(shutdownOf(shortAnn, false).minDrainMs).toBe(8000);
    expect(injectPod(shortAnn, { nativeSidecars: false }).warnings).toContainEqual('wren.io/proxy-min-drain: "8s" is shorter than container worker\'s preStop sleep (15s): the proxy\'s outbound closes before that container is even sent SIGTERM');
  });

  test('wren.io/proxy-min-drain takes the config\'s one duration grammar (common/schema duration()): what shutdown.minDrainMs accepts, the annotation does', () => {
    const annotated = (v: string) => pod({ annotations: { 'wren.io/proxy-min-drain': v }, spec: { terminationGracePeriodSeconds: 7200 } });
    // Each was refused ("ignoring ...") by the injector's own narrower grammar, though valid config.
    for (const [v, ms] of [['1.5s', 1500], ['1h', 3_600_000], ['2500', 2500], ['2500.5', 2500.5], ['1234567ms', 1_234_567], [' 20s ', 20_000]] as const) {
      expect(injectPod(annotated(v), { nativeSidecars: false }).warnings).toEqual([]);
      expect(shutdownOf(annotated(v), false).minDrainMs).toBe(ms);
      // The same value as the config reads it (a bare number there is a YAML number).
      expect(duration()(/^[\d.]+$/.test(v) ? Number(v) : v.trim(), 'shutdown.minDrainMs')).toBe(ms);
    }
  });
});

describe('classic sidecar (Kubernetes < 1.29)', () => {
  const out = apply(pod(), injectPod(pod(), { nativeSidecars: false }).patch);
  test('proxy is the first app container with a postStart await hook', () => {
    expect(out.spec?.containers.map((c) => c.name)).toEqual(['wren-proxy', 'app']);
    expect(out.spec?.initContainers?.map((c) => c.name)).toEqual(['wren-init']);
    const proxy = out.spec!.containers[0];
    expect(proxy.restartPolicy).toBeUndefined();
    expect(proxy.startupProbe).toBeUndefined();
    expect(proxy.lifecycle?.postStart?.exec?.command).toEqual(['node', '/app/dist/cli/wren.js', 'proxy', 'await', '--admin-port', '15000', '--timeout', '120s']);
  });

  test('kubectl logs / exec / cp still default to the app, not the proxy now first (kubectl.kubernetes.io/default-container, as Istio sets it); a pod\'s own choice is kept', () => {
    expect(out.metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBe('app');
    const own = pod({ annotations: { 'kubectl.kubernetes.io/default-container': 'helper' } });
    const kept = apply(own, injectPod(own, { nativeSidecars: false }).patch);
    expect(kept.metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBe('helper');
    // No annotations at all: the whole-object add carries it.
    const bare: V1Pod = { spec: { containers: [{ name: 'web', image: 'w' }] } };
    expect(apply(bare, injectPod(bare, { nativeSidecars: false }).patch).metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBe('web');
    // Native sidecars are init containers: spec.containers[0] is still the app, and nothing is added.
    expect(apply(pod(), injectPod(pod()).patch).metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBeUndefined();
  });
});

describe('wren.io/sidecar-mode: one pod\'s mode over the injector\'s (--sidecar-mode; Istio\'s sidecar.istio.io/nativeSidecar)', () => {
  const mode = (v: string) => pod({ annotations: { 'wren.io/sidecar-mode': v } });
  const where = (p: V1Pod, native: boolean) => {
    const out = apply(p, injectPod(p, { nativeSidecars: native }).patch);
    return { init: out.spec?.initContainers?.map((c) => c.name), containers: out.spec?.containers.map((c) => c.name) };
  };
  test('classic on a native injector: the proxy is the first app container, with its postStart await', () => {
    expect(where(mode('classic'), true)).toEqual({ init: ['wren-init'], containers: ['wren-proxy', 'app'] });
    const out = apply(mode('classic'), injectPod(mode('classic')).patch);
    expect(out.spec!.containers[0].lifecycle?.postStart?.exec?.command).toContain('await');
    expect(out.metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBe('app');
    // The drain follows the pod's mode: a classic sidecar keeps the proxy's 5 s minimum (no WREN_SHUTDOWN_MIN_DRAIN), not the native 0s.
    expect(out.spec!.containers[0].env?.find((e) => e.name === 'WREN_SHUTDOWN_MIN_DRAIN')).toBeUndefined();
  });
  test('native on a classic injector (--sidecar-mode classic): an init container with restartPolicy Always', () => {
    expect(where(mode('native'), false)).toEqual({ init: ['wren-init', 'wren-proxy'], containers: ['app'] });
  });
  test('another value is ignored with a warning; the injector\'s mode applies', () => {
    expect(injectPod(mode('Classic'), { nativeSidecars: true }).warnings).toContain('wren.io/sidecar-mode: ignoring "Classic" (expected native or classic); the injector\'s native mode applies');
    expect(where(mode('Classic'), true)).toEqual({ init: ['wren-init', 'wren-proxy'], containers: ['app'] });
  });
});

describe('the proxy\'s ports (InjectOptions)', () => {
  test('every port the proxy is told reaches wren iptables: its rules exclude the proxy\'s own ports, not the defaults', async () => {
    const ports = { inboundPort: 16006, outboundPort: 16001, adminPort: 16000, metricsPort: 16020 };
    const out = apply(pod(), injectPod(pod(), ports).patch);
    const init = find(out.spec?.initContainers, 'wren-init')!;
    const proxy = find(out.spec?.initContainers, 'wren-proxy')!;
    expect(proxy.env).toContainEqual({ name: 'WREN_ADMIN_PORT', value: '16000' });
    expect(argAfter(init.args, '--admin-port')).toBe('16000');
    // What the init container runs, as `wren iptables` reads it.
    let rules = '';
    expect(await iptablesCommand([...init.args!.slice(1), '--dry-run'], (t) => (rules += t), () => undefined)).toBe(0);
    expect(rules).toMatch(/--dports 16000,16001,16006,16020 .*proxy-ports.* -j RETURN/);
    expect(rules).not.toMatch(/1500[016]|15020/);
  });

  test('a port that is no real port (0, out of range) or is taken by another of them is refused, naming the option', () => {
    expect(() => injectPod(pod(), { metricsPort: 0 })).toThrow('injector option metricsPort: expected a port 1..65535, got 0');
    expect(() => injectPod(pod(), { adminPort: 70000 })).toThrow('injector option adminPort: expected a port 1..65535, got 70000');
    expect(() => injectPod(pod(), { adminPort: 15020 })).toThrow('injector option metricsPort: 15020 is already adminPort');
  });
});

describe('annotations', () => {
  test('port and CIDR exclusions reach wren iptables; ranges use multiport syntax', () => {
    const p = pod({
      annotations: {
        'wren.io/skip-inbound-ports': '22, 4191',
        'wren.io/skip-outbound-ports': '443,6000-6010',
        'wren.io/skip-outbound-cidrs': '10.0.0.0/8,169.254.169.254',
      },
    });
    const init = find(apply(p, injectPod(p).patch).spec?.initContainers, 'wren-init')!;
    expect(argAfter(init.args, '--skip-inbound-ports')).toBe('22,4191');
    expect(argAfter(init.args, '--skip-outbound-ports')).toBe('443,6000:6010');
    expect(argAfter(init.args, '--skip-outbound-cidrs')).toBe('10.0.0.0/8,169.254.169.254/32');
  });

  test('resource and log-level overrides', () => {
    const p = pod({
      annotations: {
        'wren.io/proxy-cpu-request': '50m',
        'wren.io/proxy-memory-request': '64Mi',
        'wren.io/proxy-cpu-limit': '1',
        'wren.io/proxy-memory-limit': '256Mi',
        'wren.io/proxy-log-level': 'debug',
      },
    });
    const proxy = find(apply(p, injectPod(p).patch).spec?.initContainers, 'wren-proxy')!;
    expect(proxy.resources).toEqual({ requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '256Mi' } });
    expect(proxy.env?.find((e) => e.name === 'WREN_LOG_LEVEL')?.value).toBe('debug');
    expect(proxy.env?.find((e) => e.name === 'WREN_CONCURRENCY')).toBeUndefined(); // the proxy's default (1)
    expect(proxy.env?.find((e) => e.name === 'WREN_EGRESS_SERVICES')).toBeUndefined();
  });

  test('the workload name from the owner references at admission, app/version from the labels (WREN_WORKLOAD_*), as Istio\'s injector does', () => {
    const p = pod({ labels: { app: 'web', version: 'v3', 'pod-template-hash': '5d8f7' } });
    p.metadata!.name = undefined;
    p.metadata!.generateName = 'web-v3-5d8f7-';
    p.metadata!.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-v3-5d8f7', uid: 'u', controller: true }];
    const env = Object.fromEntries((find(apply(p, injectPod(p).patch).spec?.initContainers, 'wren-proxy')!.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ WREN_WORKLOAD_NAME: 'web-v3', WREN_WORKLOAD_APP: 'web', WREN_WORKLOAD_VERSION: 'v3' });
    const bare = pod({});
    const benv = (find(apply(bare, injectPod(bare).patch).spec?.initContainers, 'wren-proxy')!.env ?? []).map((e) => [e.name, e.value]);
    expect(benv.filter(([n]) => n!.startsWith('WREN_WORKLOAD_'))).toEqual([['WREN_WORKLOAD_NAME', 'web-1']]);
  });

  test('wren.io/mesh-http2 sets how HTTP/2 and gRPC travel between sidecars (WREN_MESH_HTTP2); a malformed value is ignored with a warning', () => {
    const envOf = (p: ReturnType<typeof pod>, r = injectPod(p)) => find(apply(p, r.patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_MESH_HTTP2');
    const h2 = pod({ annotations: { 'wren.io/mesh-http2': 'h2' } });
    expect(envOf(h2)?.value).toBe('h2');
    const bad = pod({ annotations: { 'wren.io/mesh-http2': 'h1' } });
    const r = injectPod(bad);
    expect(r.warnings).toEqual(['wren.io/mesh-http2: ignoring "h1" (expected mux or h2)']);
    expect(envOf(bad, r)).toBeUndefined();
    expect(envOf(pod({}))).toBeUndefined();
  });

  test('wren.io/mesh-http1 sets how HTTP/1.1 travels between sidecars (WREN_MESH_HTTP1); a malformed value is ignored with a warning', () => {
    const h2 = pod({ annotations: { 'wren.io/mesh-http1': 'h2' } });
    const proxy = find(apply(h2, injectPod(h2).patch).spec?.initContainers, 'wren-proxy')!;
    expect(proxy.env?.find((e) => e.name === 'WREN_MESH_HTTP1')?.value).toBe('h2');
    const mux = pod({ annotations: { 'wren.io/mesh-http1': 'mux' } });
    expect(find(apply(mux, injectPod(mux).patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_MESH_HTTP1')?.value).toBe('mux');
    const bad = pod({ annotations: { 'wren.io/mesh-http1': 'http2' } });
    const r = injectPod(bad);
    expect(r.warnings).toEqual(['wren.io/mesh-http1: ignoring "http2" (expected h1, mux or h2)']);
    expect(find(apply(bad, r.patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_MESH_HTTP1')).toBeUndefined();
    const none = pod({});
    expect(find(apply(none, injectPod(none).patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_MESH_HTTP1')).toBeUndefined();
  });

  test('the mesh-wide trace collector (--proxy-trace-collector) reaches every injected sidecar as WREN_TRACING_COLLECTOR; none set: no variable', () => {
    const p = pod({});
    const env = (opts: Parameters<typeof injectPod>[1]) =>
      Object.fromEntries((find(apply(p, injectPod(p, opts).patch).spec?.initContainers, 'wren-proxy')!.env ?? []).map((e) => [e.name, e.value]));
    expect(env({ proxyTraceCollector: 'otel.observability:4317', proxyTraceCollectorPlaintext: true })).toMatchObject({
      WREN_TRACING_COLLECTOR: 'otel.observability:4317',
      WREN_TRACING_COLLECTOR_PLAINTEXT: 'true',
    });
    const tls = env({ proxyTraceCollector: 'otel.observability:4317' });
    expect(tls.WREN_TRACING_COLLECTOR).toBe('otel.observability:4317');
    expect(tls.WREN_TRACING_COLLECTOR_PLAINTEXT).toBeUndefined();
    const off = env({});
    expect(off.WREN_TRACING_COLLECTOR).toBeUndefined();
    expect(off.WREN_TRACING_COLLECTOR_PLAINTEXT).toBeUndefined();
  });

  test('wren.io/proxy-concurrency sets the listener worker threads; a malformed value is ignored with a warning', () => {
    const two = pod({ annotations: { 'wren.io/proxy-concurrency': '2' } });
    const proxy = find(apply(two, injectPod(two).patch).spec?.initContainers, 'wren-proxy')!;
    expect(proxy.env?.find((e) => e.name === 'WREN_CONCURRENCY')?.value).toBe('2');
    for (const bad of ['0', '-1', '1.5', 'two', '65']) {
      const p = pod({ annotations: { 'wren.io/proxy-concurrency': bad } });
      const r = injectPod(p);
      expect(r.warnings).toEqual([`wren.io/proxy-concurrency: ignoring ${JSON.stringify(bad)} (expected an integer from 1 to 64)`]);
      expect(find(apply(p, r.patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_CONCURRENCY')).toBeUndefined();
    }
  });

  test('wren.io/egress-services becomes the proxy\'s egress scope (WREN_EGRESS_SERVICES); a malformed one is ignored with a warning', () => {
    const p = pod({ annotations: { 'wren.io/egress-services': 'web.shop, redis.data' } });
    const proxy = find(apply(p, injectPod(p).patch).spec?.initContainers, 'wren-proxy')!;
    expect(proxy.env?.find((e) => e.name === 'WREN_EGRESS_SERVICES')?.value).toBe('web.shop,redis.data');
    const bad = pod({ annotations: { 'wren.io/egress-services': 'web' } });
    const r = injectPod(bad);
    expect(r.warnings).toEqual([expect.stringMatching(/^wren\.io\/egress-services: ignoring "web"/)]);
    expect(find(apply(bad, r.patch).spec?.initContainers, 'wren-proxy')!.env?.find((e) => e.name === 'WREN_EGRESS_SERVICES')).toBeUndefined();
  });

  test('wren.io/opaque-ports becomes the proxy\'s inbound list, protocol.inboundOpaquePorts (WREN_OPAQUE_PORTS), replacing its default list as Linkerd\'s config.linkerd.io/opaque-ports does; ranges expand; "" is none', () => {
    const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'demo', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
    const bundle = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const injected = (annotations: Record<string, string>) => {
      const p = pod({ annotations });
      const r = injectPod(p, { trustBundlePem: bundle });
      const c = find(apply(p, r.patch).spec?.initContainers, 'wren-proxy')!;
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? downward[e.valueFrom!.fieldRef!.fieldPath]]));
      // The list the inbound splices by (its own when the annotation set one, else the defaults both ways use).
      const protocol = proxyConfigFromEnv(env).protocol;
      return { warnings: r.warnings, env: env.WREN_OPAQUE_PORTS, opaque: protocol.inboundOpaquePorts ?? protocol.opaquePorts };
    };
    const ok = injected({ 'wren.io/opaque-ports': ' 5432, 3306,8000-8003,3306 ' });
    expect(ok).toEqual({ warnings: [], env: '3306,5432,8000,8001,8002,8003', opaque: [3306, 5432, 8000, 8001, 8002, 8003] });
    // Not the default's 6379: the pod's list is the whole list.
    expect(ok.opaque).not.toContain(6379);
    expect(injected({ 'wren.io/opaque-ports': '' })).toEqual({ warnings: [], env: '', opaque: [] });
    // No annotation: no variable, the proxy's default.
    expect(injected({})).toEqual({ warnings: [], env: undefined, opaque: [25, 587, 3306, 4444, 5432, 6379, 9300, 11211] });
    // The bound: 1024 ports at most, every item counted in full (a repeated range too).
    expect(injected({ 'wren.io/opaque-ports': '10000-11023' }).opaque).toHaveLength(1024);
    for (const [bad, why] of [
      ['mysql', '"mysql" is not a port or a range like 8000-8010'],
      ['3306;5432', '"3306;5432" is not a port or a range like 8000-8010'],
      ['8010-8000', '"8010-8000": a range goes from the lower port to the higher'],
      ['0', '"0": ports are 1 to 65535'],
      ['65536', '"65536": ports are 1 to 65535'],
      ['1-65535', 'more than 1024 ports'],
      ['10000-11023,11024', 'more than 1024 ports'],
      [Array(40).fill('1-100').join(','), 'more than 1024 ports'],
    ]) {
      const r = injected({ 'wren.io/opaque-ports': bad });
      expect(r.warnings).toEqual([`wren.io/opaque-ports: ignoring ${JSON.stringify(bad)} (${why}; expected ports and ranges, comma-separated, like "3306,5432,8000-8010"); the proxy's default opaque ports apply`]);
      expect([r.env, r.opaque]).toEqual([undefined, [25, 587, 3306, 4444, 5432, 6379, 9300, 11211]]);
    }
  });

  test('a wren.io/ annotation nothing reads (a misspelt key) is warned about, naming the nearest key; the known ones, the control plane\'s wren.io/proxy-port included, are not', () => {
    const p = pod({ annotations: { 'wren.io/skip-inbound-port': '8080', 'wren.io/proxy-memory-limits': '1Gi', 'wren.io/colour': 'blue', 'wren.io/proxy-port': '15006', 'example.com/x': 'y' } });
    expect(injectPod(p).warnings).toEqual([
      'wren.io/skip-inbound-port: unknown annotation, ignored (did you mean wren.io/skip-inbound-ports?)',
      'wren.io/proxy-memory-limits: unknown annotation, ignored (did you mean wren.io/proxy-memory-limit?)',
      'wren.io/colour: unknown annotation, ignored',
    ]);
    // Bounded: ten named, the rest counted.
    const many = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`wren.io/x${i}`, 'v']));
    const w = injectPod(pod({ annotations: many })).warnings;
    expect(w).toHaveLength(11);
    expect(w[10]).toBe('15 more unknown wren.io/ annotations, ignored');
    // Not injected: nothing it says matters, nothing is warned.
    expect(injectPod(pod({ labels: { 'wren.io/inject': 'disabled' }, annotations: { 'wren.io/colour': 'blue' } })).warnings).toEqual([]);
  });

  test('malformed values are ignored with warnings, never block the pod', () => {
    const p = pod({ annotations: { 'wren.io/proxy-memory-request': 'lots', 'wren.io/skip-outbound-ports': '443,http', 'wren.io/proxy-log-level': 'loud', 'wren.io/skip-outbound-cidrs': '10.0.0.0/33' } });
    const r = injectPod(p);
    expect(r.injected).toBe(true);
    expect(r.warnings).toHaveLength(4);
    const out = apply(p, r.patch);
    const proxy = find(out.spec?.initContainers, 'wren-proxy')!;
    expect(proxy.resources?.requests?.memory).toBe('20Mi');
    expect(find(out.spec?.initContainers, 'wren-init')!.args).not.toContain('--skip-outbound-ports');
  });

  test('warns when an app container runs as the proxy UID', () => {
    const p = pod({ spec: { securityContext: { runAsUser: 2102 } } });
    expect(injectPod(p).warnings.join()).toMatch(/UID 2102/);
  });

  test('a container port the proxy binds (inbound, outbound, admin, metrics) is warned about, naming the container; UDP is not', () => {
    const p: V1Pod = { spec: { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 8080 }, { containerPort: 15020, name: 'metrics' }, { containerPort: 15006, protocol: 'UDP' }] }] } };
    expect(injectPod(p).warnings).toEqual(['container app port 15020 is the proxy\'s metrics port: one of the two cannot listen on it, and connections to it reach the proxy']);
    expect(injectPod(p, { metricsPort: 16020 }).warnings).toEqual([]);
  });

  test('an httpGet lifecycle hook (which STRICT mTLS refuses from kubelet) is warned about, unless its port skips the redirect or it names a host; exec hooks are not', () => {
    const hooks = (lifecycle: V1Container['lifecycle'], annotations: Record<string, string> = {}): V1Pod => ({
      metadata: { annotations },
      spec: { containers: [{ name: 'app', image: 'a', ports: [{ name: 'http', containerPort: 8080 }], lifecycle }] },
    });
    const pre = { preStop: { httpGet: { path: '/shutdown', port: 'http' as unknown as number } } };
    expect(injectPod(hooks(pre)).warnings).toEqual([
      'container app preStop httpGet on port "http": kubelet\'s plaintext, which STRICT mTLS refuses (SIGTERM follows at once); use an exec or sleep hook, or wren.io/skip-inbound-ports',
    ]);
    expect(injectPod(hooks({ postStart: { httpGet: { path: '/warm', port: 9000 } } })).warnings).toEqual([
      'container app postStart httpGet on port 9000: kubelet\'s plaintext, which STRICT mTLS refuses (the container is killed); use an exec or sleep hook, or wren.io/skip-inbound-ports',
    ]);
    expect(injectPod(hooks(pre, { 'wren.io/skip-inbound-ports': '8000-8090' })).warnings).toEqual([]);
    expect(injectPod(hooks({ preStop: { httpGet: { host: '10.0.0.9', port: 80 } } })).warnings).toEqual([]);
    expect(injectPod(hooks({ preStop: { exec: { command: ['sleep', '5'] } } })).warnings).toEqual([]);
    // The hook itself is left as written.
    expect(injectPod(hooks(pre)).patch.some((op) => op.path.includes('lifecycle'))).toBe(false);
    // The API server may truncate a warning past 256 characters: the remedy at its end survives the longest names.
    const longest: V1Pod = { spec: { containers: [{ name: 'c'.repeat(63), image: 'a', ports: [{ name: 'p'.repeat(15), containerPort: 8080 }], lifecycle: { postStart: { httpGet: { path: '/', port: 'p'.repeat(15) as unknown as number } } } }] } };
    const [w] = injectPod(longest).warnings;
    expect([w.length <= 256, w.endsWith('wren.io/skip-inbound-ports')]).toEqual([true, true]);
  });

  test('the UID warning names each container that runs as the proxy\'s UID, init containers and native sidecars too, and a container\'s own runAsUser wins over the pod\'s', () => {
    const app = { name: 'app', image: 'a' };
    const shipper = { name: 'log-shipper', image: 's', restartPolicy: 'Always', securityContext: { runAsUser: 2102 } };
    const r1 = injectPod({ spec: { initContainers: [shipper], containers: [app] } });
    expect(r1.warnings).toEqual(['container log-shipper runs as UID 2102, the proxy\'s UID: its outbound traffic bypasses the proxy']);
    const r2 = injectPod({ spec: { securityContext: { runAsUser: 2102 }, initContainers: [{ name: 'migrate', image: 'm' }], containers: [app, { name: 'own', image: 'o', securityContext: { runAsUser: 1000 } }] } });
    expect(r2.warnings).toEqual(['containers migrate, app run as UID 2102, the proxy\'s UID: their outbound traffic bypasses the proxy']);
    // Pod-level 2102 that every container overrides: nothing bypasses.
    expect(injectPod({ spec: { securityContext: { runAsUser: 2102 }, containers: [{ ...app, securityContext: { runAsUser: 1000 } }] } }).warnings).toEqual([]);
  });
});

describe('patch shape', () => {
  test('a pod without metadata.annotations or volumes gets whole-object adds; "/" in keys is escaped', () => {
    const withAnn = injectPod(pod({ annotations: { a: 'b' } })).patch;
    expect(withAnn).toContainEqual({ op: 'add', path: '/metadata/annotations/wren.io~1injected', value: 'true' });
    const bare = injectPod(pod()).patch;
    // The probe replacements come first: they name the pod's own container indices, which the inserts shift.
    expect(bare.map((o) => o.path)).toEqual(['/spec/containers/0/livenessProbe', '/spec/containers/0/readinessProbe', '/spec/initContainers', '/spec/volumes', '/metadata/annotations']);
  });

  test('our applier and fast-json-patch agree', () => {
    for (const native of [true, false]) {
      const p = pod({ annotations: { x: 'y' }, spec: { initContainers: [{ name: 'i', image: 'i' }], volumes: [] } });
      const patch = injectPod(p, { nativeSidecars: native }).patch;
      expect(applyPatch(p, patch)).toEqual(apply(p, patch));
    }
  });

  test('injection is deterministic', () => {
    expect(injectPod(pod())).toEqual(injectPod(pod()));
  });
});

/**
 * An app's own native sidecar (an init container with restartPolicy Always, e.g. a log
 * shipper) is probed by kubelet like an app container (KEP-753): its probes are rewritten
 * too, with the pod's indices even though wren-init and wren-proxy are inserted before it
 * (found by adversary4 when its probes were redirected to the proxy and failed mTLS).
 */
test('the probes of an app-owned native sidecar are rewritten at its shifted index; a plain init container\'s are not looked at', () => {
  const p: V1Pod = {
    metadata: { name: 'web-0', namespace: 'shop' },
    spec: {
      initContainers: [
        { name: 'migrate', image: 'm:1', readinessProbe: { tcpSocket: { port: 7777 as unknown as number } } },
        {
          name: 'log-shipper',
          image: 'shipper:1',
          restartPolicy: 'Always',
          ports: [{ name: 'shipper-http', containerPort: 9000 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'shipper-http' as unknown as number } },
          startupProbe: { tcpSocket: { port: 9001 as unknown as number } },
        },
      ],
      containers: [{ name: 'app', image: 'web:1', readinessProbe: { httpGet: { path: '/healthz', port: 8080 as unknown as number } } }],
    },
  };
  for (const nativeSidecars of [true, false]) {
    const res = injectPod(p, { namespaceLabels: { 'wren.io/inject': 'enabled' }, nativeSidecars });
    expect(res.injected).toBe(true);
    const out = apply(p, res.patch);
    expect(applyPatch(p, res.patch)).toEqual(out);
    expect(find(out.spec!.initContainers, 'wren-init')!.args).not.toContain('--skip-inbound-ports');
    expect(find(out.spec!.initContainers, 'migrate')!.readinessProbe).toEqual({ tcpSocket: { port: 7777 } });
    const shipper = find(out.spec!.initContainers, 'log-shipper')!;
    expect([shipper.readinessProbe?.httpGet?.path, shipper.startupProbe?.httpGet?.path, shipper.startupProbe?.tcpSocket]).toEqual(['/app-health/log-shipper/readyz', '/app-health/log-shipper/startupz', undefined]);
    expect(find(out.spec!.containers, 'app')!.readinessProbe?.httpGet).toEqual({ path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' });
    const proxy = find([...out.spec!.initContainers!, ...out.spec!.containers], 'wren-proxy')!;
    expect(Object.keys(JSON.parse(proxy.env!.find((e) => e.name === 'WREN_APP_PROBES')!.value!))).toEqual(['/app-health/log-shipper/readyz', '/app-health/log-shipper/startupz', '/app-health/app/readyz']);
  }
});

describe('wren.io/proxy-port: the sidecar listens where the control plane sends peers (adv64: it was read by the control plane only)', () => {
  const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'demo', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
  const bundle = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const injectedWith = (value: string) => {
    const p = pod({ annotations: { 'wren.io/proxy-port': value } });
    const r = injectPod(p, { trustBundlePem: bundle });
    const out = apply(p, r.patch);
    const sidecar = find(out.spec?.initContainers, 'wren-proxy')!;
    const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value ?? downward[e.valueFrom!.fieldRef!.fieldPath]]));
    return {
      warnings: r.warnings,
      // Where the proxy listens (its env, read as the proxy reads it), what the container declares, where the init container redirects.
      listens: proxyConfigFromEnv(env).listeners.inbound.port,
      declared: sidecar.ports?.find((x) => x.name === 'wren-inbound')?.containerPort,
      redirected: Number(argAfter(find(out.spec?.initContainers, 'wren-init')!.args, '--inbound-port')),
      // Where the control plane sends peers: its own reading of the injected pod.
      advertised: ((): number | string | null => {
        try {
          return parsePod(out, '').proxyPort;
        } catch (e) {
          return (e as Error).message;
        }
      })(),
    };
  };

  test('a port: the proxy listens on it, declares it and is redirected to it, and the control plane advertises the same', () => {
    expect(injectedWith('16006')).toEqual({ warnings: [], listens: 16006, declared: 16006, redirected: 16006, advertised: 16006 });
    expect(injectedWith('15006')).toEqual({ warnings: [], listens: 15006, declared: 15006, redirected: 15006, advertised: 15006 });
  });

  test('not a port, or another proxy port: warned, the sidecar keeps 15006', () => {
    const bad = injectedWith('inbound');
    expect(bad.warnings).toEqual(['wren.io/proxy-port: ignoring "inbound" (expected a port number 1-65535); the proxy listens on 15006']);
    expect([bad.listens, bad.declared, bad.redirected]).toEqual([15006, 15006, 15006]);
    // The control plane reads the declared port, so it sends peers where the proxy listens.
    expect(bad.advertised).toBe(15006);
    const admin = injectedWith('15000');
    expect(admin.warnings).toEqual(["wren.io/proxy-port: ignoring 15000, the proxy's admin port; the proxy listens on 15006: remove the annotation or choose another port"]);
    expect([admin.listens, admin.declared, admin.redirected, admin.advertised]).toEqual([15006, 15006, 15006, 15006]);
  });
});
