import { X509Certificate } from 'node:crypto';
import { splitPemCerts } from '../../certs/index.js';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SELECTOR } from '../control-plane-admin.js';
import type { KubeHttp } from '../kube-http.js';
import { honourRetryAfter } from '../retry-after.js';
import { daysLeft, fail, guarded, ok, skipped, warn, type CheckOutcome } from './check-result.js';
import type { ExpectedCrd, InstallPermission } from './expected.js';
import { namesHost, webhookServiceHost } from '../../control-plane/injector/webhook-service.js';
import { NATIVE_SIDECARS_SINCE, parseKubernetesVersion, runsNativeSidecars } from '../../control-plane/injector/sidecar-mode.js';

/**
 * The Kubernetes half of `wren check`: the API server, its version and clock, what the
 * caller may do (SelfSubjectAccessReview), the CRDs, the control-plane pods and the
 * injector webhook. The mesh half (trust, proxies) is mesh-checks.ts, over the control
 * plane's admin port reached through the API server. docs/operations.md.
 */
/**
 * The oldest Kubernetes Wren runs on at all: the Gateway API CRDs it ships (bundle v1.6.1,
 * manifests/crds/gateway-*.yaml) support 1.26 and newer (Gateway API's minimum since v1.1,
 * restated for v1.4: their CEL validation rules), as do Wren's own CRDs'
 * x-kubernetes-validations. Below it `kubernetes-version` fails.
 */
export const MIN_KUBERNETES = { major: 1, minor: 26 } as const;
/**
 * From here on the injector's default --sidecar-mode auto injects native sidecars. Between
 * MIN_KUBERNETES and this it injects classic ones, which run (with their limits,
 * docs/kubernetes.md): `kubernetes-version` warns (‼) there and does not fail the command.
 */
export const NATIVE_KUBERNETES = NATIVE_SIDECARS_SINCE;
const atLeast = (v: { major: number; minor: number }, min: { major: number; minor: number }) => v.major > min.major || (v.major === min.major && v.minor >= min.minor);
/** |API server Date - local clock| above this fails: certificates and tokens carry validity times. */
export const MAX_CLOCK_SKEW_MS = 5_000;
export const WEBHOOK_CONFIGURATION = 'wren-sidecar-injector';
export const WEBHOOK_SECRET = 'wren-webhook-tls';

export interface KubeCtx {
  readonly kube: KubeHttp;
  readonly now: () => number;
  readonly minDays: number;
}

/** GET /version: reachable, version supported, clock skew (its Date header). */
export async function apiChecks(c: KubeCtx): Promise<{ reachable: boolean; outcomes: CheckOutcome[] }> {
  let t0 = c.now();
  let r;
  try {
    // A 429 with Retry-After (API Priority and Fairness: /version is in no exempt flow schema)
    // is asked again within cli/retry-after.ts's bounds, as getJson's reads are. The clock
    // skew is judged against the answered request's time range, not one widened by the wait.
    r = await honourRetryAfter(`${c.kube.server}/version`, () => ((t0 = c.now()), c.kube.request('GET', '/version')));
    if (r.status !== 200) throw new Error(`GET /version: HTTP ${r.status}`);
  } catch (e) {
    return { reachable: false, outcomes: [fail('kubernetes-api', `cannot reach the API server ${c.kube.server}: ${(e as Error).message}`, 'check the kubeconfig context (kubectl config current-context) and that the cluster is up')] };
  }
  const t1 = c.now();
  const out: CheckOutcome[] = [ok('kubernetes-api', `the API server ${c.kube.server} answers`)];
  // Read as the injector's --sidecar-mode auto reads it (a decorated minor like "29+", else
  // gitVersion), so the check and the injector agree on the cluster's version; a body that
  // is not JSON, or JSON that is not an object, carries no version (and throws nothing).
  let v: unknown;
  try {
    v = JSON.parse(r.body);
  } catch {
    v = r.body;
  }
  const parsed = parseKubernetesVersion(v);
  const gitVersion = typeof v === 'object' && v !== null && typeof (v as { gitVersion?: unknown }).gitVersion === 'string' ? (v as { gitVersion: string }).gitVersion : undefined;
  const min = `${MIN_KUBERNETES.major}.${MIN_KUBERNETES.minor}`;
  const native = `${NATIVE_KUBERNETES.major}.${NATIVE_KUBERNETES.minor}`;
  const shown = parsed ? gitVersion ?? `${parsed.major}.${parsed.minor}` : '';
  if (!parsed) out.push(fail('kubernetes-version', `the API server reports no usable version (${(JSON.stringify(v) ?? String(v)).slice(0, 100)})`, `Wren needs Kubernetes >= ${min}`));
  else if (!atLeast(parsed, MIN_KUBERNETES))
    out.push(fail('kubernetes-version', `Kubernetes ${shown} is older than ${min}, the oldest Wren supports`, `upgrade the cluster to >= ${min} (the Gateway API CRDs Wren ships need it), >= ${native} for native sidecars`));
  // 1.26 to 1.28: the default --sidecar-mode auto injects classic sidecars, which run; a
  // warning (linkerd check's ‼), not a failure that would have `wren check` exit 1 on a
  // cluster the mesh works on. Only --sidecar-mode native (or pods annotated native) is refused there.
  else if (!runsNativeSidecars(parsed))
    out.push(warn('kubernetes-version', `Kubernetes ${shown} is older than ${native}: the injector's default --sidecar-mode auto injects classic sidecars`, `classic sidecars run with their limits (docs/kubernetes.md, What is added); --sidecar-mode native, or a pod annotated wren.io/sidecar-mode: native, is refused here; --sidecar-mode classic says so explicitly; upgrade to >= ${native} for native sidecars`));
  else out.push(ok('kubernetes-version', `Kubernetes ${shown} (>= ${native})`));
  if (!Number.isFinite(r.dateMs)) out.push(fail('clock-skew', 'the API server sent no Date header', 'a proxy in front of the API server strips it; compare the clocks by hand'));
  else {
    // Date has whole seconds: compare with the local time range of the request, widened by 1 s.
    const skew = r.dateMs < t0 - 1000 ? r.dateMs - (t0 - 1000) : r.dateMs > t1 ? r.dateMs - t1 : 0;
    if (Math.abs(skew) > MAX_CLOCK_SKEW_MS)
      out.push(fail('clock-skew', `the local clock and the API server's differ by ${Math.round(skew / 1000)} s (more than ${MAX_CLOCK_SKEW_MS / 1000} s)`, 'sync the clocks (NTP / chrony) of this machine and the nodes: certificate validity is checked against them'));
    else out.push(ok('clock-skew', `the local clock is within ${MAX_CLOCK_SKEW_MS / 1000} s of the API server's`));
  }
  return { reachable: true, outcomes: out };
}

interface Ssar { readonly verb: string; readonly group: string; readonly resource: string; readonly subresource?: string; readonly namespace: string | null }

async function denied(c: KubeCtx, asks: readonly Ssar[]): Promise<string[]> {
  const answers = await Promise.all(
    asks.map(async (a) => {
      // A 429 with Retry-After (API Priority and Fairness) is asked again (KubeHttp.create).
      const r = await c.kube.create('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
        spec: { resourceAttributes: { verb: a.verb, group: a.group, resource: a.resource, ...(a.subresource ? { subresource: a.subresource } : {}), ...(a.namespace ? { namespace: a.namespace } : {}) } },
      });
      if (r.status !== 201 && r.status !== 200) throw new Error(`SelfSubjectAccessReview: HTTP ${r.status}`);
      const allowed = (JSON.parse(r.body) as { status?: { allowed?: boolean } }).status?.allowed === true;
      return allowed ? null : `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.group ? `.${a.group}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`;
    }),
  );
  return answers.filter((x): x is string => x !== null);
}

/** The reads the post-install checks make, in the control plane's namespace (`--namespace`). */
const checkReads = (namespace: string): Ssar[] => [
  { verb: 'get', group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', namespace: null },
  { verb: 'get', group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', namespace: null },
  { verb: 'list', group: '', resource: 'pods', namespace },
  { verb: 'get', group: '', resource: 'pods', subresource: 'proxy', namespace },
  { verb: 'get', group: '', resource: 'secrets', namespace },
];

export function rbacCheck(c: KubeCtx, namespace = CONTROL_PLANE_NAMESPACE): Promise<CheckOutcome> {
  return guarded('rbac', 'the API server refused SelfSubjectAccessReview', async () => {
    const reads = checkReads(namespace);
    const no = await denied(c, reads);
    return no.length === 0
      ? ok('rbac', `you may read what these checks read (${reads.length} permissions)`)
      : fail('rbac', `you may not: ${no.join(', ')}`, 'run as a user with cluster-admin, or bind a ClusterRole with these permissions to your user');
  });
}

export function rbacInstallCheck(c: KubeCtx, perms: readonly InstallPermission[]): Promise<CheckOutcome> {
  return guarded('rbac-install', 'the API server refused SelfSubjectAccessReview', async () => {
    const no = await denied(c, perms.map((p) => ({ verb: 'create', group: p.group, resource: p.resource, namespace: p.namespace })));
    return no.length === 0
      ? ok('rbac-install', `you may create everything the install creates (${perms.length} kinds)`)
      : fail('rbac-install', `you may not: ${no.join(', ')}`, 'install as a cluster admin: the install creates cluster-scoped objects (CRDs, ClusterRoles, the webhook configuration)');
  });
}

interface Crd { metadata: { name: string; labels?: Record<string, string> }; spec: { group: string; versions: { name: string; served: boolean; storage: boolean }[] } }
const crdPath = (name: string) => `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`;

export function crdsCheck(c: KubeCtx, expected: readonly ExpectedCrd[]): Promise<CheckOutcome> {
  return guarded('crds', 'could not read CustomResourceDefinitions', async () => {
    const problems: string[] = [];
    for (const e of expected) {
      const crd = await c.kube.getJson<Crd>(crdPath(e.name));
      if (!crd) {
        problems.push(`${e.name} is not installed`);
        continue;
      }
      const served = crd.spec.versions.filter((v) => v.served).map((v) => v.name);
      const missing = e.versions.filter((v) => !served.includes(v));
      const storage = crd.spec.versions.find((v) => v.storage)?.name ?? '';
      if (missing.length) problems.push(`${e.name} does not serve ${missing.join(', ')} (serves ${served.join(', ') || 'nothing'})`);
      else if (storage !== e.storage) problems.push(`${e.name} stores ${storage || 'nothing'}, expected ${e.storage}`);
    }
    return problems.length === 0
      ? ok('crds', `${expected.length} CRDs installed at the expected versions`)
      : fail('crds', problems.join('; '), 'apply the CRDs of this release: kubectl apply -k manifests (or kubectl apply -f manifests/crds)');
  });
}

/** --pre: none of our CRD names is taken by something else or at other versions. */
export function crdsConflictCheck(c: KubeCtx, expected: readonly ExpectedCrd[]): Promise<CheckOutcome> {
  return guarded('crds-conflict', 'could not read CustomResourceDefinitions', async () => {
    const conflicts: string[] = [];
    for (const e of expected) {
      const crd = await c.kube.getJson<Crd>(crdPath(e.name));
      if (!crd) continue;
      const served = crd.spec.versions.filter((v) => v.served).map((v) => v.name);
      // The Gateway API CRDs (HTTPRoute, GRPCRoute, ReferenceGrant) are shared with every
      // Gateway API implementation and shipped unchanged: already installed is normal, as
      // long as the versions this release reads are served.
      const shared = e.name.endsWith('.gateway.networking.k8s.io');
      if (!shared && crd.metadata.labels?.['app.kubernetes.io/part-of'] !== 'wren') conflicts.push(`${e.name} exists and is not Wren's (no app.kubernetes.io/part-of=wren)`);
      else if (!e.versions.every((v) => served.includes(v))) conflicts.push(`${e.name} exists at ${served.join(', ')}, this release needs ${e.versions.join(', ')}`);
    }
    return conflicts.length === 0
      ? ok('crds-conflict', `no existing CRD conflicts with Wren's ${expected.length}`)
      : fail('crds-conflict', conflicts.join('; '), 'another product owns these names, or an older Wren is installed: remove it (or upgrade) first');
  });
}

interface PodList { items: { metadata: { name: string }; status?: { phase?: string; conditions?: { type: string; status: string }[] } }[] }

export function controlPlanePodsCheck(c: KubeCtx, namespace = CONTROL_PLANE_NAMESPACE): Promise<CheckOutcome> {
  return guarded('control-plane-pods', 'could not list pods', async () => {
    const pods = (await c.kube.getJson<PodList>(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(CONTROL_PLANE_SELECTOR)}`))?.items ?? [];
    if (pods.length === 0) return fail('control-plane-pods', `no control-plane pod (${CONTROL_PLANE_SELECTOR}) in ${namespace}`, 'install Wren (kubectl apply -k manifests), or pass --namespace');
    const unready = pods.filter((p) => !(p.status?.phase === 'Running' && p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')));
    return unready.length === 0
      ? ok('control-plane-pods', `${pods.length} control-plane pod(s) ready`)
      : fail('control-plane-pods', `not ready: ${unready.map((p) => `${p.metadata.name} (${p.status?.phase ?? 'unknown'})`).join(', ')}`, `kubectl -n ${namespace} describe pod / logs: a missing Secret (wren-identity-issuer) or a crash keeps it unready`);
  });
}

const pemOf = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');

/** The webhook configuration's caBundle (valid now), and the serving certificate in its Secret (chains to it, names the Service, not about to expire). */
export async function webhookChecks(c: KubeCtx, namespace = CONTROL_PLANE_NAMESPACE): Promise<CheckOutcome[]> {
  const host = webhookServiceHost(namespace);
  let ca: X509Certificate | null = null;
  const config = await guarded('webhook', 'could not read the MutatingWebhookConfiguration', async () => {
    const w = await c.kube.getJson<{ webhooks?: { name: string; clientConfig?: { caBundle?: string } }[] }>(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION}`);
    if (!w) return fail('webhook', `MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION} not found`, 'apply manifests/install/40-injector-webhook.yaml');
    const hooks = w.webhooks ?? [];
    if (hooks.length === 0) return fail('webhook', `${WEBHOOK_CONFIGURATION} has no webhooks`, 'apply manifests/install/40-injector-webhook.yaml');
    for (const h of hooks) {
      const b = h.clientConfig?.caBundle ?? '';
      if (!b) return fail('webhook', `webhook ${h.name} has no caBundle: the API server cannot verify the injector`, `set caBundle to the CA of the ${WEBHOOK_SECRET} Secret (docs/kubernetes.md)`);
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(splitPemCerts(pemOf(b))[0] ?? '');
      } catch {
        return fail('webhook', `webhook ${h.name}: caBundle is not a PEM certificate`, `set caBundle to the base64 of the CA certificate's PEM`);
      }
      const left = daysLeft(Date.parse(cert.validTo), c.now());
      if (left < 0 || Date.parse(cert.validFrom) > c.now()) return fail('webhook', `webhook ${h.name}: the caBundle certificate is not valid now (${cert.validFrom} .. ${cert.validTo})`, 'rotate the webhook CA and serving certificate (docs/kubernetes.md)');
      // The API server verifies the serving chain up to this CA: it expiring breaks injection as surely as the leaf expiring.
      if (left < c.minDays) return fail('webhook', `webhook ${h.name}: the caBundle certificate expires in ${left} day(s) (< ${c.minDays})`, 'rotate the webhook CA and serving certificate, then update caBundle (docs/kubernetes.md)');
      ca ??= cert;
    }
    return ok('webhook', `${WEBHOOK_CONFIGURATION}: ${hooks.length} webhook(s) with a valid caBundle`);
  });
  if (config.status !== 'ok' || !ca) return [config, skipped('webhook-cert', 'no valid webhook configuration to check it against')];
  const caCert: X509Certificate = ca;
  const serving = await guarded('webhook-cert', `could not read Secret ${namespace}/${WEBHOOK_SECRET}`, async () => {
    const s = await c.kube.getJson<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/${WEBHOOK_SECRET}`);
    if (!s?.data?.['tls.crt']) return fail('webhook-cert', `Secret ${namespace}/${WEBHOOK_SECRET} (tls.crt) not found`, 'create the serving certificate Secret (docs/kubernetes.md)');
    const cert = new X509Certificate(splitPemCerts(pemOf(s.data['tls.crt']))[0] ?? '');
    const left = daysLeft(Date.parse(cert.validTo), c.now());
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return fail('webhook-cert', `the serving certificate is not signed by the webhook's caBundle: the API server will refuse the injector's TLS`, 'set caBundle to the CA that signed wren-webhook-tls, or re-issue the certificate');
    if (!namesHost(cert, host)) return fail('webhook-cert', `the serving certificate does not name ${host}`, `re-issue it with the DNS name ${host}`);
    if (left < c.minDays) return fail('webhook-cert', left < 0 ? `the serving certificate expired on ${cert.validTo}` : `the serving certificate expires in ${left} day(s) (< ${c.minDays})`, 'renew wren-webhook-tls (the control plane reloads it)');
    return ok('webhook-cert', `serving certificate for ${host} valid for ${left} more days`);
  });
  return [config, serving];
}
