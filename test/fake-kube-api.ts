import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { withSidecar } from './helpers/meshed-pod.js';

/**
 * A small Kubernetes API server for tests, driven through the real @kubernetes/client-node.
 * Real object JSON, one global resourceVersion counter (like etcd), list + watch with
 * resume from a resourceVersion, BOOKMARK events when allowWatchBookmarks=true, and 410
 * Gone for versions older than the compacted history (as an ERROR event carrying a
 * Status with code 410, the API server's usual answer, or as HTTP 410).
 */
export type Resource =
  | 'services' | 'endpointslices' | 'pods' | 'trafficpolicies' | 'peerauthentications' | 'authorizationpolicies' | 'requestauthentications' | 'meshservices' | 'telemetries'
  | 'httproutes' | 'grpcroutes' | 'referencegrants' | 'ratelimitpolicies' | 'externalservices';
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
  { resource: 'ratelimitpolicies', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'RateLimitPolicyList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'RateLimitPolicy' },
  { resource: 'telemetries', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'TelemetryList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'Telemetry' },
  { resource: 'externalservices', prefix: '/apis/policy.wren.io/v1alpha1', listKind: 'ExternalServiceList', apiVersion: 'policy.wren.io/v1alpha1', kind: 'ExternalService' },
  { resource: 'httproutes', prefix: '/apis/gateway.networking.k8s.io/v1', listKind: 'HTTPRouteList', apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute' },
  { resource: 'grpcroutes', prefix: '/apis/gateway.networking.k8s.io/v1', listKind: 'GRPCRouteList', apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute' },
  { resource: 'referencegrants', prefix: '/apis/gateway.networking.k8s.io/v1beta1', listKind: 'ReferenceGrantList', apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant' },
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
  /** Every PATCH of a /status subresource, in order: which object and the patch body. */
  readonly statusPatches: { resource: Resource; namespace: string; name: string; contentType: string; body: Record<string, unknown> }[] = [];
  /**
   * Another writer's status update that lands just before the next status PATCH is served
   * (a race the test cannot time otherwise): its merge patch is applied first (own
   * resourceVersion, MODIFIED event), then the PATCH is handled against the newer object.
   */
  interleaveStatusPatch: Record<string, unknown> | null = null;
  /** Tokens TokenReview knows: token -> who it proves, its audiences, whether it has expired, the pod (name, UID) it is bound to. */
  readonly tokens = new Map<string, { username: string; audiences: string[]; expired?: boolean; pod?: string; podUid?: string }>();
  /** While true, TokenReviews are read and never answered: an API server that accepts requests and hangs. */
  holdTokenReviews = false;
  /** Held TokenReviews whose client has not closed them yet. */
  readonly heldTokenReviews = new Set<ServerResponse>();
  /** TokenReviews received, answered or held. */
  tokenReviewsReceived = 0;
  /** ServiceAccounts (namespace/name) a TokenRequest may mint for: the install's wren-cli by default. */
  readonly serviceAccounts = new Set<string>(['wren-system/wren-cli']);
  port = 0;
  /** GET /version. */
  version: { major: string; minor: string; gitVersion: string } = { major: '1', minor: '31', gitVersion: 'v1.31.2' };
  /** While true, GET /version answers 503 (an API server that is not serving yet). */
  versionUnavailable = false;
  /** GET /version requests received. */
  versionReads = 0;
  /** While true, GET /version is read and never answered: an API server that accepts the request and hangs. */
  holdVersion = false;
  /** Held GET /version requests whose client has not closed them yet. */
  readonly heldVersions = new Set<ServerResponse>();
  /** Added to this server's clock in the Date header of every response (clock-skew tests). */
  dateOffsetMs = 0;
  /** SelfSubjectAccessReview answers allowed=false for these "verb resource[/subresource][.group][ namespace]" keys. */
  readonly deniedAccess = new Set<string>();
  /** Single objects served as-is at their exact GET path (CRDs, webhook configurations, Secrets, ...). */
  readonly rawObjects = new Map<string, Record<string, unknown>>();
  /**
   * Resources whose API is not served (a CRD not installed, e.g. the Gateway API's): their
   * list and watch answer 404 NotFound, as the API server answers for an unknown group or resource.
   */
  readonly missing = new Set<Resource>();
  /** Resources the caller may not list or watch (RBAC): 403 Forbidden. */
  readonly forbidden = new Set<Resource>();
  /** While true, every list and watch answers 503 (an API server that is down or not ready yet). */
  unavailable = false;
  /**
   * API Priority and Fairness rejecting requests it has no seat for: "METHOD path" -> how
   * many of the next such requests answer 429 TooManyRequests with this Retry-After (the
   * API server's Status body), before they are served again. Each 429 sent is counted in `throttledSent`.
   */
  readonly throttle = new Map<string, { count: number; retryAfter: string }>();
  /** 429s sent by `throttle`, per "METHOD path". */
  readonly throttledSent = new Map<string, number>();
  /** The pods' proxy subresource: "namespace/name:port" -> "host:port" it forwards to (like the API server to the pod IP). */
  readonly podProxies = new Map<string, string>();

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

  /**
   * Create or replace an object (its spec: metadata.generation goes up by one, as the API
   * server does for a spec change of a custom resource; the status is kept unless given).
   */
  apply(resource: Resource, obj: Record<string, unknown>): Obj {
    const o = structuredClone(obj) as Obj;
    const key = `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
    const existing = this.objects.get(resource)!.get(key);
    o.metadata.namespace ??= 'default';
    o.metadata.generation = ((existing?.metadata.generation as number | undefined) ?? 0) + 1;
    if (existing?.status !== undefined && o.status === undefined) o.status = structuredClone(existing.status);
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
    if (this.dateOffsetMs !== 0) res.setHeader('date', new Date(Date.now() + this.dateOffsetMs).toUTCString());
    const throttleKey = `${req.method} ${url.pathname}`;
    const throttled = this.throttle.get(throttleKey);
    if (throttled && throttled.count > 0) {
      throttled.count--;
      this.throttledSent.set(throttleKey, (this.throttledSent.get(throttleKey) ?? 0) + 1);
      // The body is drained first (as the API server reads the request before answering).
      req.resume();
      res.setHeader('retry-after', throttled.retryAfter);
      return void json(res, 429, status(429, 'TooManyRequests', 'Too many requests, please try again later.'));
    }
    if (req.method === 'GET' && url.pathname === '/version') {
      this.versionReads++;
      if (this.holdVersion) {
        this.heldVersions.add(res);
        res.on('close', () => this.heldVersions.delete(res));
        return;
      }
      if (this.versionUnavailable) return void json(res, 503, status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
      return void json(res, 200, this.version);
    }
    if (req.method === 'POST' && url.pathname === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') return void this.accessReview(req, res);
    const raw = req.method === 'GET' ? this.rawObjects.get(url.pathname) : undefined;
    if (raw) return void json(res, 200, raw);
    const proxied = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/proxy(\/.*)?$/.exec(url.pathname);
    if (proxied && req.method === 'GET') return void this.podProxy(`${proxied[1]}/${proxied[2]}`, `${proxied[3] ?? '/'}${url.search}`, res, req.headers['x-wren-admin-token']);
    const tokenRequest = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)\/token$/.exec(url.pathname);
    if (tokenRequest && req.method === 'POST') return void this.tokenRequest(tokenRequest[1], tokenRequest[2], req, res);
    const hit = this.route(url.pathname);
    if (req.method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') return void this.tokenReview(req, res);
    if (req.method === 'PATCH' && url.pathname.endsWith('/status')) return void this.patchStatus(req, res, url.pathname);
    if (!hit || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(status(404, 'NotFound', `no route for ${req.method} ${url.pathname}`)));
    }
    const { route, ns } = hit;
    if (this.unavailable) return void json(res, 503, status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
    if (this.missing.has(route.resource)) return void json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    if (this.forbidden.has(route.resource))
      return void json(res, 403, status(403, 'Forbidden', `${route.resource} is forbidden: User "system:serviceaccount:wren-system:wren-control-plane" cannot list resource "${route.resource}"`));
    const selector = (url.searchParams.get('labelSelector') ?? '').split(',').filter(Boolean).map((t) => t.split('='));
    const items = [...this.objects.get(route.resource)!.values()].filter(
      (o) => (!ns || o.metadata.namespace === ns) && selector.every(([k, v]) => (o.metadata.labels as Record<string, string> | undefined)?.[k] === v),
    );
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

  /**
   * PATCH .../namespaces/<ns>/<resource>/<name>/status with a JSON merge patch (RFC 7386)
   * of `status` only: the status subresource ignores everything else, keeps
   * metadata.generation, bumps resourceVersion and sends a MODIFIED event (as the API server does).
   */
  private patchStatus(req: IncomingMessage, res: ServerResponse, path: string): void {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const m = /^(.*)\/namespaces\/([^/]+)\/([^/]+)\/([^/]+)\/status$/.exec(path);
      const route = m ? ROUTES.find((r) => r.prefix === m[1] && r.resource === m[3]) : undefined;
      const existing = route ? this.objects.get(route.resource)!.get(`${m![2]}/${m![4]}`) : undefined;
      const contentType = String(req.headers['content-type'] ?? '');
      if (!route || !existing) {
        res.writeHead(404, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(status(404, 'NotFound', `no object at ${path}`)));
      }
      if (contentType !== 'application/merge-patch+json') {
        res.writeHead(415, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(status(415, 'UnsupportedMediaType', `this fake takes merge patches only, got ${contentType}`)));
      }
      const key = `${m![2]}/${m![4]}`;
      if (this.interleaveStatusPatch) {
        const other = structuredClone(existing);
        other.status = mergePatch(other.status, this.interleaveStatusPatch);
        other.metadata.resourceVersion = String(++this.rv);
        this.interleaveStatusPatch = null;
        this.objects.get(route.resource)!.set(key, other);
        this.emit(route.resource, 'MODIFIED', other);
      }
      const current = this.objects.get(route.resource)!.get(key)!;
      const patch = JSON.parse(body) as Record<string, unknown> & { metadata?: { resourceVersion?: string } };
      this.statusPatches.push({ resource: route.resource, namespace: m![2], name: m![4], contentType, body: patch });
      // A resourceVersion in the patch is a precondition (optimistic concurrency): 409 when the object moved on.
      const want = patch.metadata?.resourceVersion;
      if (want !== undefined && want !== current.metadata.resourceVersion) {
        res.writeHead(409, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(status(409, 'Conflict', `the object has been modified (resourceVersion ${String(current.metadata.resourceVersion)}, not ${want})`)));
      }
      const o = structuredClone(current);
      o.status = mergePatch(o.status, patch.status);
      o.metadata.resourceVersion = String(++this.rv);
      this.objects.get(route.resource)!.set(key, o);
      this.emit(route.resource, 'MODIFIED', o);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    });
  }

  /** SelfSubjectAccessReview: allowed unless the attributes' key is in deniedAccess. */
  private accessReview(req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const review = JSON.parse(body) as { spec?: { resourceAttributes?: { verb?: string; group?: string; resource?: string; subresource?: string; namespace?: string } } };
      const a = review.spec?.resourceAttributes ?? {};
      const key = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.group ? `.${a.group}` : ''}${a.namespace ? ` ${a.namespace}` : ''}`;
      const allowed = !this.deniedAccess.has(key);
      json(res, 201, { kind: 'SelfSubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: {}, spec: review.spec, status: { allowed, ...(allowed ? {} : { reason: `denied by the test: ${key}` }) } });
    });
  }

  /** GET through a pod's proxy subresource to the address registered for it (503 like the API server when none). */
  private podProxy(podPort: string, path: string, res: ServerResponse, adminToken: string | string[] | undefined): void {
    const target = this.podProxies.get(podPort);
    if (!target) return void json(res, 503, status(503, 'ServiceUnavailable', `no endpoints available for pod "${podPort}"`));
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    // Like the API server: request headers other than the credentials it consumed are passed on.
    const headers = typeof adminToken === 'string' ? { 'x-wren-admin-token': adminToken } : {};
    const up = httpRequest({ host, port, path, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, { 'content-type': String(r.headers['content-type'] ?? 'application/octet-stream') });
      r.pipe(res);
    });
    up.on('error', (e) => json(res, 503, status(503, 'ServiceUnavailable', `error trying to reach service: ${e.message}`)));
    up.end();
  }

  /**
   * TokenRequest (create serviceaccounts/token): a token for that ServiceAccount and the
   * asked audiences, known to tokenReview; refused (403) when the test denied
   * `create serviceaccounts/token NS` (deniedAccess) or the account is not in `serviceAccounts`.
   */
  private tokenRequest(ns: string, name: string, req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (this.deniedAccess.has(`create serviceaccounts/token ${ns}`)) return void json(res, 403, status(403, 'Forbidden', `serviceaccounts "${name}" is forbidden: cannot create resource "serviceaccounts/token" in namespace "${ns}"`));
      if (!this.serviceAccounts.has(`${ns}/${name}`)) return void json(res, 404, status(404, 'NotFound', `serviceaccounts "${name}" not found`));
      const spec = (JSON.parse(body) as { spec?: { audiences?: string[]; expirationSeconds?: number } }).spec ?? {};
      const token = `minted-${ns}-${name}-${this.tokens.size}`;
      this.tokens.set(token, { username: `system:serviceaccount:${ns}:${name}`, audiences: spec.audiences ?? ['https://kubernetes.default.svc'] });
      json(res, 201, { kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', metadata: { name, namespace: ns }, spec, status: { token, expirationTimestamp: new Date(Date.now() + (spec.expirationSeconds ?? 3600) * 1000).toISOString() } });
    });
  }

  /** TokenReview as the API server answers it: authenticated only for a known, unexpired token whose audiences meet spec.audiences. */
  private tokenReview(req: IncomingMessage, res: ServerResponse): void {
    this.tokenReviewsReceived++;
    if (this.holdTokenReviews) {
      this.heldTokenReviews.add(res);
      res.on('close', () => this.heldTokenReviews.delete(res));
      req.resume();
      return;
    }
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
          : { authenticated: true, audiences, user: { username: t.username, uid: 'uid-1', groups: ['system:serviceaccounts'], ...(t.pod ? { extra: { 'authentication.kubernetes.io/pod-name': [t.pod], ...(t.podUid ? { 'authentication.kubernetes.io/pod-uid': [t.podUid] } : {}) } } : {}) } };
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

/** RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else (lists too) replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
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
  /** targetRef.uid (the EndpointSlice controller always sets it): the pod's metadata.uid. */
  podUid?: string;
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
      ...(e.pod ? { targetRef: { kind: 'Pod', namespace: ns, name: e.pod, ...(e.podUid ? { uid: e.podUid } : {}) } } : {}),
      ...(e.zone ? { zone: e.zone } : {}),
      nodeName: 'node-1',
    })),
  };
}

/** A running pod; `meshed`: opted in and injected (the real injector's patch: it has the sidecar). */
export function podJson(name: string, ns: string, serviceAccount: string, ip: string, meshed = true): Record<string, unknown> {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app: name.replace(/-[a-z0-9]+$/, ''), ...(meshed ? { 'wren.io/inject': 'enabled' } : {}) } },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'example/app:1' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
  return meshed ? withSidecar(pod) : pod;
}

export function trafficPolicyJson(name: string, ns: string, target: string, policy: Record<string, unknown>, ports?: number[]): Record<string, unknown> {
  return {
    apiVersion: 'policy.wren.io/v1alpha1',
    kind: 'TrafficPolicy',
    metadata: { name, namespace: ns },
    spec: { targetRef: { kind: 'Service', name: target }, ...(ports ? { ports } : {}), policy },
  };
}
