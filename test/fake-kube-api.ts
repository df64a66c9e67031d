import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';

/**
 * A small Kubernetes API server for tests, driven through the real @kubernetes/client-node.
 * Real object JSON, one global resourceVersion counter (like etcd), list + watch with
 * resume from a resourceVersion, BOOKMARK events when allowWatchBookmarks=true, and 410
 * Gone for versions older than the compacted history (as an ERROR event carrying a
 * Status with code 410, the API server's usual answer, or as HTTP 410).
 */
export type Resource = 'services' | 'endpointslices' | 'pods' | 'trafficpolicies' | 'peerauthentications' | 'authorizationpolicies' | 'requestauthentications' | 'meshservices' | 'telemetries' | 'externalservices';
type Obj = Record<string, unknown> & { metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown } };
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

const ROUTES: { resource: Resource; prefix: string; listKind: string; apiVersion: string; kind: string }[] = [
  { resource: 'services', prefix: '/api/v1', listKind: 'ServiceList', apiVersion: 'v1', kind: 'Service' },
  { resource: 'pods', prefix: '/api/v1', listKind: 'PodList', apiVersion: 'v1', kind: 'Pod' },
  { resource: 'endpointslices', prefix: '/apis/discovery.k8s.io/v1', listKind: 'EndpointSliceList', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' },
  { resource: 'trafficpolicies', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'TrafficPolicyList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'TrafficPolicy' },
  { resource: 'peerauthentications', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'PeerAuthenticationList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'PeerAuthentication' },
  { resource: 'authorizationpolicies', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'AuthorizationPolicyList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'AuthorizationPolicy' },
  { resource: 'requestauthentications', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'RequestAuthenticationList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'RequestAuthentication' },
  { resource: 'meshservices', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'MeshServiceList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'MeshService' },
  { resource: 'telemetries', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'TelemetryList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'Telemetry' },
  { resource: 'externalservices', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'ExternalServiceList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'ExternalService' },
];

interface Watcher {
  resource: Resource;
  ns: string | null;
  res: ServerResponse;
  bookmarks: boolean;
}

export interface RequestRecord {
  readonly path: string;
  readonly query: Record<string, string>;
}

export class FakeKubeApi {
  private rv = 100;
  private compactedRv = 0;
  private readonly objects = new Map<Resource, Map<string, Obj>>(ROUTES.map((r) => [r.resource, new Map()]));
  private readonly history: { rv: number; resource: Resource; type: EventType; obj: Obj }[] = [];
  private readonly watchers = new Set<Watcher>();
  private bookmarkTimer: ReturnType<typeof setInterval> | null = null;
  /** 'event': 200 + ERROR event with a 410 Status (what the API server does); 'http': HTTP 410. */
  goneMode: 'event' | 'http' = 'event';
  readonly requests: RequestRecord[] = [];
  /** Tokens TokenReview knows: token -> who it proves, its audiences, whether it has expired. */
  readonly tokens = new Map<string, { username: string; audiences: string[]; expired?: boolean; pod?: string }>();
  port = 0;

  private constructor(private readonly server: Server) {}

  static async start(opts: { bookmarkIntervalMs?: number } = {}): Promise<FakeKubeApi> {
    const server = createServer();
    const api = new FakeKubeApi(server);
    server.on('request', (req, res) => api.handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    api.port = (server.address() as AddressInfo).port;
    api.bookmarkTimer = setInterval(() => api.sendBookmarks(), opts.bookmarkIntervalMs ?? 1000);
    api.bookmarkTimer.unref();
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  kubeConfig(): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'tester' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tester' }],
      currentContext: 'fake',
    });
    return kc;
  }

  apply(resource: Resource, obj: Record<string, unknown>): Obj {
    const o = structuredClone(obj) as Obj;
    const key = `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
    const existing = this.objects.get(resource)!.get(key);
    o.metadata.namespace ??= 'default';
    o.metadata.resourceVersion = String(++this.rv);
    o.metadata.uid ??= (existing?.metadata.uid as string | undefined) ?? `uid-${this.rv}`;
    o.metadata.creationTimestamp ??= existing?.metadata.creationTimestamp ?? new Date(1_700_000_000_000 + this.rv * 1000).toISOString();
    this.objects.get(resource)!.set(key, o);
    this.emit(resource, existing ? 'MODIFIED' : 'ADDED', o);
    return o;
  }

  delete(resource: Resource, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const existing = this.objects.get(resource)!.get(key);
    if (!existing) throw new Error(`no ${resource} ${key}`);
    this.objects.get(resource)!.delete(key);
    const o = structuredClone(existing);
    o.metadata.resourceVersion = String(++this.rv);
    this.emit(resource, 'DELETED', o);
  }

  get(resource: Resource, namespace: string, name: string): Obj | undefined {
    return this.objects.get(resource)!.get(`${namespace}/${name}`);
  }

  /**
   * Compact the history: a watch resuming from an older resourceVersion gets 410 Gone.
   * With dropWatches, open watches end now, after an ERROR 410 event if `withError`.
   */
  expireHistory(opts: { dropWatches?: boolean; withError?: boolean } = {}): void {
    // Every event up to the current resourceVersion is gone. A watch from the current
    // version needs none of them, so it stays valid (the API server never answers 410
    // to a watch from the latest version); one from any older version gets 410.
    this.compactedRv = this.rv;
    this.history.length = 0;
    if (opts.dropWatches) this.dropWatches(opts.withError ?? true);
  }

  /** End every open watch (as a connection the API server closes), optionally after an ERROR 410 event. */
  dropWatches(withError = false): void {
    for (const w of this.watchers) {
      if (withError) w.res.write(JSON.stringify({ type: 'ERROR', object: gone(this.rv) }) + '\n');
      w.res.end();
    }
    this.watchers.clear();
  }

  /** Send a BOOKMARK carrying the current resourceVersion on every watch that asked for them. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const route = ROUTES.find((r) => r.resource === w.resource)!;
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: route.kind, apiVersion: route.apiVersion, metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  watcherCount(resource?: Resource): number {
    return [...this.watchers].filter((w) => !resource || w.resource === resource).length;
  }

  async close(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    await new Promise<void>((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }

  private emit(resource: Resource, type: EventType, obj: Obj): void {
    this.history.push({ rv: this.rv, resource, type, obj });
    for (const w of this.watchers)
      if (w.resource === resource && (!w.ns || w.ns === obj.metadata.namespace)) w.res.write(JSON.stringify({ type, object: obj }) + '\n');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    this.requests.push({ path: url.pathname, query: Object.fromEntries(url.searchParams) });
    const hit = this.route(url.pathname);
    if (req.method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') return void this.tokenReview(req, res);
    if (!hit || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(status(404, 'NotFound', `no route for ${req.method} ${url.pathname}`)));
    }
    const { route, ns } = hit;
    const items = [...this.objects.get(route.resource)!.values()].filter((o) => !ns || o.metadata.namespace === ns);
    if (url.searchParams.get('watch') !== 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ kind: route.listKind, apiVersion: route.apiVersion, metadata: { resourceVersion: String(this.rv) }, items }));
    }
    const from = url.searchParams.get('resourceVersion') ?? '';
    if (from !== '' && from !== '0' && Number(from) < this.compactedRv) {
      if (this.goneMode === 'http') {
        res.writeHead(410, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(gone(this.rv)));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(JSON.stringify({ type: 'ERROR', object: gone(this.rv) }) + '\n');
      return void res.end();
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    if (from === '' || from === '0') for (const o of items) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
    else
      for (const e of this.history)
        if (e.rv > Number(from) && e.resource === route.resource && (!ns || e.obj.metadata.namespace === ns))
          res.write(JSON.stringify({ type: e.type, object: e.obj }) + '\n');
    const w: Watcher = { resource: route.resource, ns, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    this.watchers.add(w);
    res.on('close', () => this.watchers.delete(w));
  }

  /** TokenReview as the API server answers it: authenticated only for a known, unexpired token whose audiences meet spec.audiences. */
  private tokenReview(req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const review = JSON.parse(body) as { spec?: { token?: string; audiences?: string[] } };
      const t = this.tokens.get(review.spec?.token ?? '');
      const wanted = review.spec?.audiences ?? [];
      const audiences = t ? (wanted.length ? t.audiences.filter((a) => wanted.includes(a)) : t.audiences) : [];
      const status = !t || t.expired
        ? { authenticated: false, error: t ? 'token has expired' : 'invalid bearer token' }
        : audiences.length === 0
          ? { authenticated: false, error: 'token audiences are invalid for the target audiences' }
          : { authenticated: true, audiences, user: { username: t.username, uid: 'uid-1', groups: ['system:serviceaccounts'], ...(t.pod ? { extra: { 'authentication.kubernetes.io/pod-name': [t.pod] } } : {}) } };
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: {}, spec: review.spec, status }));
    });
  }

  private route(path: string): { route: (typeof ROUTES)[number]; ns: string | null } | null {
    for (const route of ROUTES) {
      if (path === `${route.prefix}/${route.resource}`) return { route, ns: null };
      const m = new RegExp(`^${route.prefix}/namespaces/([^/]+)/${route.resource}$`).exec(path);
      if (m) return { route, ns: m[1] };
    }
    return null;
  }
}

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

const gone = (rv: number) => status(410, 'Expired', `too old resource version (current ${rv})`);

// ---- builders of real object JSON -------------------------------------------------------

export function serviceJson(name: string, ns: string, ports: { name?: string; port: number; targetPort?: number; appProtocol?: string }[], clusterIP = '10.96.0.10'): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns },
    spec: {
      type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], selector: { app: name },
      ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, targetPort: p.targetPort ?? p.port, protocol: 'TCP', ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
    },
  };
}

export interface SliceEndpointSpec {
  ip: string;
  pod?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zone?: string;
}

export function endpointSliceJson(name: string, ns: string, service: string, ports: { name?: string; port: number }[], endpoints: SliceEndpointSpec[]): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: 'TCP' })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.pod ? { targetRef: { kind: 'Pod', namespace: ns, name: e.pod } } : {}),
      ...(e.zone ? { zone: e.zone } : {}),
      nodeName: 'node-1',
    })),
  };
}

export function podJson(name: string, ns: string, serviceAccount: string, ip: string, meshed = true): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app: name.replace(/-[a-z0-9]+$/, ''), ...(meshed ? { 'wren.io/inject': 'enabled' } : {}) } },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'example/app:1' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

export function trafficPolicyJson(name: string, ns: string, target: string, policy: Record<string, unknown>, ports?: number[]): Record<string, unknown> {
  return {
    apiVersion: 'policy.wren.io/v1alpha1',
    kind: 'TrafficPolicy',
    metadata: { name, namespace: ns },
    spec: { targetRef: { kind: 'Service', name: target }, ...(ports ? { ports } : {}), policy },
  };
}
