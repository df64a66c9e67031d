/**
 * `wren check`: is the mesh healthy (or, with --pre, can it be installed)? Each check is
 * one line, ✓ or ✗ with a hint and a link to docs/operations.md; the exit code is 1 when
 * any check fails (like `linkerd check`). Kubernetes mode by default (the kubeconfig's
 * cluster); local mode with `--source dir:DIR` and/or `--admin HOST:PORT`, running the
 * checks that apply to a mesh without Kubernetes (`npm run mesh`).
 */
import { parseArgs } from 'node:util';
import { systemClock } from '../../common/clock.js';
import { printableJson } from '../../common/printable.js';
import { CONTROL_PLANE_NAMESPACE, directReplica, hostPort, kubeReplicas, timeoutMsOf } from '../control-plane-admin.js';
import { KubeHttp } from '../kube-http.js';
import { fail, formatOutcomes, skipped, type CheckOutcome } from './check-result.js';
import { expectedCrds, installPermissions } from './expected.js';
import { apiChecks, controlPlanePodsCheck, crdsCheck, crdsConflictCheck, rbacCheck, rbacInstallCheck, webhookChecks, type KubeCtx } from './kube-checks.js';
import { manifestsCheck } from './local-checks.js';
import { meshChecks } from './mesh-checks.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren check [--pre] [options]
       wren check --source dir:DIR [--admin HOST:PORT ...] [options]

Kubernetes mode (default): the API server, its version and clock, your RBAC, the CRDs,
the control-plane pods, the injector webhook and its certificates, the objects the
control plane rejects, the trust anchors and issuer, and every proxy's sync status and
certificate.
  --pre                      only what matters before installing: the API server, its
                             version and clock, RBAC to install, no conflicting CRDs
  --kubeconfig PATH          (default: KUBECONFIG, ~/.kube/config, in-cluster)
  --namespace NS             the control plane's namespace (default ${CONTROL_PLANE_NAMESPACE})

Local mode (a mesh without Kubernetes, e.g. npm run mesh):
  --source dir:DIR           the manifests the control plane reads parse
  --admin HOST:PORT          a control-plane admin address (repeat for every replica):
                             ready, objects its source rejects, trust anchors and issuer,
                             proxies synced, certificates

Options:
  --min-days N               certificates (anchors, issuer, webhook) must be valid for N
                             more days (default 7; not with --pre, nor --source alone)
  --timeout SECONDS          per request: 5, or a duration (500ms, 5s, 1m); default 5
                             (not with --source alone: it reads files only)
  -o, --output text|json     (default text)
  -h, --help                 show this help

Exit codes: 0 every check passed, 1 a check failed, 2 bad usage.
`;

export async function checkCommand(argv: string[], out: Out, err: Out): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true,
      options: {
        pre: { type: 'boolean', default: false }, kubeconfig: { type: 'string' }, namespace: { type: 'string' },
        source: { type: 'string' }, admin: { type: 'string', multiple: true }, 'min-days': { type: 'string' },
        timeout: { type: 'string' }, output: { type: 'string', short: 'o', default: 'text' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
    if (v.output !== 'text' && v.output !== 'json') throw new Error(`--output: '${v.output}' is not text or json`);
    if (v.source !== undefined && !v.source.startsWith('dir:')) throw new Error(`--source: '${v.source}' is not dir:DIR`);
    const local = v.source !== undefined || (v.admin?.length ?? 0) > 0;
    if (local && (v.pre || v.kubeconfig || v.namespace !== undefined)) throw new Error('--source / --admin (local mode) and --pre / --kubeconfig / --namespace (Kubernetes mode) are exclusive');
    // Given where nothing reads it, a flag would be taken and ignored: --pre checks no
    // certificate, and --source alone reads files, asking nothing of anyone.
    if (v['min-days'] !== undefined && v.pre) throw new Error('--min-days: --pre checks no certificate');
    const filesOnly = v.source !== undefined && (v.admin?.length ?? 0) === 0;
    if (filesOnly && (v['min-days'] !== undefined || v.timeout !== undefined)) throw new Error('--min-days and --timeout go with --admin: --source alone only reads the manifests');
    if (!/^\d{1,4}$/.test(v['min-days'] ?? '7')) throw new Error(`--min-days: '${v['min-days']}' is not a whole number of days`);
    timeoutMsOf(v.timeout ?? '5');
    for (const a of v.admin ?? []) hostPort(a, '--admin');
  } catch (e) {
    err(`wren check: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    out(USAGE);
    return 0;
  }
  const timeoutMs = timeoutMsOf(v.timeout ?? '5');
  const minDays = Number(v['min-days'] ?? '7');
  const now = () => systemClock.wallNow();
  const outcomes: CheckOutcome[] = [];
  if (v.source !== undefined || v.admin?.length) {
    if (v.source !== undefined) outcomes.push(await manifestsCheck(v.source.slice('dir:'.length)));
    if (v.admin?.length) outcomes.push(...(await meshChecks(v.admin.map((a) => directReplica(a, timeoutMs)), now, minDays)));
  } else outcomes.push(...(await kubernetesChecks(v.kubeconfig ?? null, v.namespace ?? CONTROL_PLANE_NAMESPACE, v.pre ?? false, { now, minDays, timeoutMs })));
  out(v.output === 'json' ? printableJson({ ok: outcomes.every((o) => o.status !== 'fail'), checks: outcomes }, 2) + '\n' : formatOutcomes(outcomes));
  return outcomes.some((o) => o.status === 'fail') ? 1 : 0;
}

const PRE_IDS = ['kubernetes-version', 'clock-skew', 'rbac-install', 'crds-conflict'];
const POST_IDS = ['kubernetes-version', 'clock-skew', 'rbac', 'crds', 'control-plane-pods', 'webhook', 'webhook-cert', 'control-plane', 'source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs'];

async function kubernetesChecks(kubeconfig: string | null, namespace: string, pre: boolean, o: { now: () => number; minDays: number; timeoutMs: number }): Promise<CheckOutcome[]> {
  let kube: KubeHttp;
  try {
    kube = KubeHttp.load(kubeconfig, o.timeoutMs);
  } catch (e) {
    const why = `no usable kubeconfig: ${(e as Error).message}`;
    return [fail('kubernetes-api', why, 'pass --kubeconfig, set KUBECONFIG, or run in a pod; for a local mesh use --admin / --source'), ...(pre ? PRE_IDS : POST_IDS).map((id) => skipped(id, 'no kubeconfig'))];
  }
  const c: KubeCtx = { kube, now: o.now, minDays: o.minDays };
  const api = await apiChecks(c);
  if (!api.reachable) return [...api.outcomes, ...(pre ? PRE_IDS : POST_IDS).map((id) => skipped(id, 'the API server is not reachable'))];
  const out = [...api.outcomes];
  if (pre) {
    out.push(await rbacInstallCheck(c, installPermissions()));
    out.push(await crdsConflictCheck(c, expectedCrds()));
    return out;
  }
  out.push(await rbacCheck(c, namespace), await crdsCheck(c, expectedCrds()), await controlPlanePodsCheck(c, namespace), ...(await webhookChecks(c, namespace)));
  try {
    out.push(...(await meshChecks(await kubeReplicas(kube, namespace), o.now, o.minDays)));
  } catch (e) {
    out.push(fail('control-plane', `cannot reach the control plane through the API server: ${(e as Error).message}`, 'check the control-plane pods and your RBAC (pods/proxy)'));
  }
  return out;
}
