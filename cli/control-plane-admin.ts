import { lookup } from 'node:dns/promises';
import { request } from '../common/node-http.js';
import { isIP } from 'node:net';
import { KubeHttp, type KubeResponse } from './kube-http.js';
import { ADMIN_TOKEN_AUDIENCE, ADMIN_TOKEN_HEADER } from '../contract/identity.js';
import { DEFAULT_RETRY_AFTER, honourRetryAfter, type Answer, type RetryAfterPolicy } from './retry-after.js';

/**
 * Reaching the control plane's admin port (15014) from the CLI: directly (`--control-plane
 * HOST:PORT`, repeatable; the local demo's is 127.0.1.254:15014), or in Kubernetes through
 * the API server's proxy subresource of every control-plane pod. Every replica, not the
 * Service: each replica knows only the proxies connected to it, and a Service proxy
 * would reach one of them at random.
 */
export const DEMO_CONTROL_PLANE_ADMIN = '127.0.1.254:15014';
export const CONTROL_PLANE_NAMESPACE = 'wren-system';
export const CONTROL_PLANE_SELECTOR = 'app.kubernetes.io/name=wren-control-plane';
export const CONTROL_PLANE_ADMIN_PORT = 15014;

export interface Replica {
  /** HOST:PORT, or namespace/pod in Kubernetes mode. */
  readonly name: string;
  /**
   * One answer to GET `path`. A 429 or 503 with Retry-After (the control plane's render
   * budget, the API server's priority and fairness) is asked again after the wait it names,
   * within DEFAULT_RETRY_AFTER (cli/retry-after.ts); past those bounds it rejects with a
   * RetryAfterExhausted that says so.
   */
  get(path: string): Promise<{ status: number; body: string; readonly note?: string }>;
}

/**
 * HOST:PORT with a DNS name resolved to an address (IPv6 bracketed): what the CLI sends as
 * Host, since the admin port answers only localhost or an IP literal (common/admin-host.ts:
 * DNS-rebinding protection against browsers; the CLI is none). So `--control-plane
 * wren-control-plane.wren-system:15014` works.
 */
export async function addressed(address: string): Promise<string> {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(address);
  if (!m || isIP(m[1]) || m[1].startsWith('[') || m[1] === 'localhost') return address;
  const ip = (await lookup(m[1])).address;
  return `${ip.includes(':') ? `[${ip}]` : ip}:${m[2]}`;
}

/**
 * HOST:PORT (an IPv6 literal bracketed), or throws naming the flag: the commands check every
 * address while they parse their arguments, so a malformed one is a usage error (exit 2),
 * never a failure to reach something (1) or a stack trace.
 */
export function hostPort(address: string, flag: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new Error(`${flag}: '${address}' is not HOST:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/**
 * The largest answer the CLI reads from an admin port: far above any mesh's config dump
 * (tens of MiB for 10,000 services), below V8's longest string (about 512 Mi characters),
 * past which reading on threw a RangeError out of the command.
 */
export const MAX_ADMIN_ANSWER_BYTES = 256 << 20;

export function directReplica(address: string, timeoutMs: number, maxBytes = MAX_ADMIN_ANSWER_BYTES, retry: RetryAfterPolicy = DEFAULT_RETRY_AFTER): Replica {
  const { host, port } = hostPort(address, 'address');
  return {
    name: address,
    // A DNS name is resolved here and the address sent as Host (addressed(), above).
    get: (path) => honourRetryAfter(`${address}${path}`, () => getOnce(path), retry),
  };

  async function getOnce(path: string): Promise<Answer> {
    const ip = isIP(host) || host === 'localhost' ? host : (await lookup(host)).address;
    return new Promise((resolve, reject) => {
      const req = request({ host: ip, port, path, headers: { host: `${ip.includes(':') ? `[${ip}]` : ip}:${port}` } }, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (d: Buffer) => {
          bytes += d.length;
          if (bytes > maxBytes) return req.destroy(new Error(`the answer from ${address} is larger than ${maxBytes >> 20} MiB`));
          chunks.push(d);
        });
        res.on('end', () => {
          clearTimeout(deadline);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ...retryAfterOf(res.headers['retry-after']) });
        });
        res.on('error', reject);
      });
      // --timeout bounds the whole request, the answer's last byte included: a socket idle
      // timeout let an admin port that sends a byte now and then hold the command for ever.
      const deadline = setTimeout(() => req.destroy(new Error(`no answer from ${address} within ${timeoutMs} ms (--timeout)`)), timeoutMs);
      req.on('error', (e) => {
        clearTimeout(deadline);
        reject(e);
      });
      req.end();
    });
  }
}

/** The Retry-After header, when there is one, as an Answer's field. */
function retryAfterOf(h: string | string[] | undefined): { retryAfter?: string } {
  const v = Array.isArray(h) ? h[0] : h;
  return v === undefined ? {} : { retryAfter: v };
}

interface PodList {
  readonly items: readonly { metadata: { name: string }; status?: { phase?: string; podIP?: string } }[];
}

/** The ServiceAccount (no RBAC of its own) the CLI mints its admin-port tokens for (manifests/install/10-rbac.yaml). */
const CLI_SERVICE_ACCOUNT = 'wren-cli';

/**
 * A short-lived token of `wren-cli` for the audience `wren-admin` (TokenRequest, the
 * `create serviceaccounts/token` right in the control plane's namespace: an administrator's):
 * the control plane answers its debug pages and /api/ to other addresses only with one
 * (control-plane/admin-access.ts). It travels in `x-wren-admin-token` because the API
 * server's pod proxy strips the `Authorization` it authenticated us with. Without one (RBAC,
 * an older install, an API server still answering 429 past KubeHttp.create's retries) the control plane
 * answers 403; `problem` says why there was none, for that answer's error.
 */
async function adminToken(kube: KubeHttp, namespace: string): Promise<{ readonly token: string | null; readonly problem: string | null }> {
  // A 429 with Retry-After (API Priority and Fairness) is asked again (KubeHttp.create).
  const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${CLI_SERVICE_ACCOUNT}/token`;
  let r: KubeResponse;
  try {
    r = await kube.create(path, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [ADMIN_TOKEN_AUDIENCE], expirationSeconds: 600 } });
  } catch (e) {
    // KubeHttp's message starts with the method and URL: the rest says what happened.
    return { token: null, problem: `TokenRequest ${namespace}/${CLI_SERVICE_ACCOUNT}: ${(e as Error).message.replace(/^POST \S+: /, '')}` };
  }
  if (r.status !== 200 && r.status !== 201) {
    return { token: null, problem: `TokenRequest ${namespace}/${CLI_SERVICE_ACCOUNT}: HTTP ${r.status}` };
  }
  const token = (JSON.parse(r.body) as { status?: { token?: unknown } }).status?.token;
  return typeof token === 'string' && token !== '' ? { token, problem: null } : { token: null, problem: `TokenRequest ${namespace}/${CLI_SERVICE_ACCOUNT}: no token in the answer` };
}

/** Every running control-plane pod, reached through /api/v1/namespaces/NS/pods/NAME:PORT/proxy/. */
export async function kubeReplicas(kube: KubeHttp, namespace = CONTROL_PLANE_NAMESPACE, port = CONTROL_PLANE_ADMIN_PORT, retry: RetryAfterPolicy = DEFAULT_RETRY_AFTER): Promise<Replica[]> {
  // Name the server: the bare error of a kubeconfig that leads nowhere says nothing of where
  // (with none at all, client-node falls back to http://localhost:8080 and refuses plain HTTP).
  const pods = await kube.getJson<PodList>(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(CONTROL_PLANE_SELECTOR)}`).catch((e: Error) => {
    throw new Error(`cannot list the control-plane pods through the Kubernetes API server ${kube.server}: ${e.message} (the kubeconfig: --kubeconfig, else KUBECONFIG, ~/.kube/config, in-cluster)`, { cause: e });
  });
  const { token, problem } = pods?.items.length ? await adminToken(kube, namespace) : { token: null, problem: null };
  const headers: Record<string, string> = token ? { [ADMIN_TOKEN_HEADER]: token } : {};
  return (pods?.items ?? [])
    .filter((p) => p.status?.phase === 'Running')
    .map((p) => ({
      name: `${namespace}/${p.metadata.name}`,
      // The pod proxy passes the admin port's status and Retry-After through; a 429 from the API server itself carries its own.
      get: (path: string) =>
        honourRetryAfter(`${namespace}/${p.metadata.name}${path}`, async () => {
          const r = await kube.request('GET', `/api/v1/namespaces/${namespace}/pods/${p.metadata.name}:${port}/proxy${path}`, undefined, headers);
          // The 403 of a control plane sent no token says only that it wants one: the note says why there was none.
          const note = r.status === 403 && problem !== null ? { note: `no admin token: ${problem}` } : {};
          return { status: r.status, body: r.body, ...note, ...(r.retryAfter === undefined ? {} : { retryAfter: r.retryAfter }) };
        }, retry),
    }));
}

/** GET a JSON document from a replica; throws naming the replica and the status. */
export async function replicaJson<T>(r: Replica, path: string): Promise<T> {
  const res = await r.get(path);
  if (res.status !== 200) throw new Error(`${r.name}${path}: HTTP ${res.status} ${res.body.slice(0, 200).trim()}${res.note ? ` (${res.note})` : ''}`);
  return JSON.parse(res.body) as T;
}

/** The options every command that reads the control plane takes (parseArgs shape). */
export const TARGET_OPTIONS = {
  'control-plane': { type: 'string', multiple: true },
  kubernetes: { type: 'boolean', default: false },
  kubeconfig: { type: 'string' },
  namespace: { type: 'string' },
  timeout: { type: 'string', default: '5' },
} as const;

export const TARGET_USAGE = `  --control-plane HOST:PORT  a control-plane admin address (repeat for every replica;
                             default ${DEMO_CONTROL_PLANE_ADMIN}, the local demo's)
  --kubernetes               reach every control-plane pod through the Kubernetes API server
  --kubeconfig PATH          kubeconfig for --kubernetes (implies it; default: KUBECONFIG,
                             ~/.kube/config, in-cluster)
  --namespace NS             with --kubernetes: the control plane's namespace (default ${CONTROL_PLANE_NAMESPACE})
  --timeout SECONDS          per request: 5, or a duration (500ms, 5s, 1m); default 5`;

/**
 * `--timeout`: seconds (`5`, `0.5`) or a duration (`500ms`, `5s`, `1m`), as every wren
 * command that reads the control plane takes it (`wren proxy await` and `wren
 * trust-anchors` documented durations, the others seconds: each refused the other's form).
 */
export function timeoutMsOf(v: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m)?$/.exec(v ?? '5');
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!(ms > 0 && ms <= 600_000)) throw new Error(`--timeout: '${v}' is not a number of seconds or a duration (500ms, 5s, 1m) in (0, 10m]`);
  return Math.round(ms);
}

/** The TARGET_OPTIONS' usage errors (exit 2): a bad --timeout or address, exclusive flags. */
export function checkTargetArgs(v: { 'control-plane'?: string[]; kubernetes?: boolean; kubeconfig?: string; namespace?: string; timeout?: string }): void {
  timeoutMsOf(v.timeout);
  for (const a of v['control-plane'] ?? []) hostPort(a, '--control-plane');
  if ((v.kubernetes || v.kubeconfig) && v['control-plane']?.length) throw new Error('--control-plane and --kubernetes are exclusive');
  // Read only to find the control-plane pods: given without Kubernetes mode it would be ignored.
  if (v.namespace !== undefined && !(v.kubernetes || v.kubeconfig)) throw new Error('--namespace is where the control-plane pods are found in Kubernetes mode: give --kubernetes (or --kubeconfig) with it');
}

export async function replicasFrom(
  v: { 'control-plane'?: string[]; kubernetes?: boolean; kubeconfig?: string; namespace?: string; timeout?: string },
): Promise<Replica[]> {
  const timeoutMs = timeoutMsOf(v.timeout);
  if (v.kubernetes || v.kubeconfig) {
    if (v['control-plane']?.length) throw new Error('--control-plane and --kubernetes are exclusive');
    return kubeReplicas(KubeHttp.load(v.kubeconfig ?? null, timeoutMs), v.namespace ?? CONTROL_PLANE_NAMESPACE);
  }
  return (v['control-plane']?.length ? v['control-plane'] : [DEMO_CONTROL_PLANE_ADMIN]).map((a) => directReplica(a, timeoutMs));
}
