import * as k8s from '@kubernetes/client-node';
import type { Timer } from '../../common/clock.js';
import type { Parser } from '../../common/schema.js';
import {
  parseEndpointSlice, parseK8sService, parseMeshService, parsePod, parseTrafficPolicyResource,
  TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION,
} from '../translate/k8s-objects.js';
import { parseRateLimitPolicyResource } from '../translate/ratelimit-objects.js';
import {
  failClosedAuthorizationPolicy, failClosedPeerAuthentication, parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource,
} from '../translate/policy-objects.js';
import { parseTelemetryResource } from '../translate/telemetry-objects.js';
import { parseGrpcRoute, parseHttpRoute, parseReferenceGrant, GATEWAY_GROUP } from '../translate/route-objects.js';
import { parseExternalServiceResource } from '../translate/external-service-objects.js';
import { ClusterIndex } from './cluster-index.js';
import { RouteStatusWriter } from './route-status-writer.js';
import { backoffDelay, IndexCommitter, type MeshSource, type SourceContext } from './source.js';
import { rejectionOf, type SourceRejection } from './source-rejection.js';
import { stripUnusedFields } from './strip-fields.js';

/**
 * Kubernetes source: list+watch informers (client-node's ListWatch, what makeInformer
 * builds) on Services, EndpointSlices, Pods, and the policy.wren.io/v1alpha1 TrafficPolicies,
 * PeerAuthentications, AuthorizationPolicies, RequestAuthentications, Telemetries and MeshServices (a MeshService wins over a
 * Service of the same name, as in the directory source: translate.ts), and the Gateway API
 * HTTPRoutes, GRPCRoutes (gateway.networking.k8s.io/v1) and ReferenceGrants (v1beta1):
 * routes with Service parents are compiled (route-compile.ts) and their status written back
 * (route-status-writer.ts). Without the Gateway API CRDs the source runs without routes.
 *
 * - The informer keeps resourceVersion, resumes watches from it and relists when the
 *   API answers 410 Gone (HTTP 410 or an ERROR event with a 410 Status).
 * - Watches ask for bookmarks (allowWatchBookmarks=true): makeInformer does not pass
 *   that parameter, so the Watch handed to ListWatch adds it. A BOOKMARK advances the
 *   informer's resourceVersion, so a reconnect resumes from there instead of from an
 *   old version that may have been compacted (fewer 410 relists).
 * - On any other error ListWatch stops; we restart it with capped exponential backoff
 *   and jitter (100 ms -> 30 s) and count it in wren_cp_watch_restarts_total.
 * - A CRD that is not installed (404 on the list: no Gateway API) is an empty list, so the
 *   source becomes ready without those objects; it is not watched but listed again on that
 *   backoff (its attempt count not reset by the empty list), until the CRD appears.
 * - An object that fails validation is logged and counted; the last good version stays.
 *   It is listed (rejected(): kind, namespace/name, field path, reason) until a valid
 *   version of it arrives or it is deleted: GET /debug/rejected, `wren check`. The last
 *   good version is the one this process read: after a restart a refused AuthorizationPolicy
 *   or PeerAuthentication has none, and is enforced fail-closed instead
 *   (failClosedAuthorizationPolicy, failClosedPeerAuthentication), as a new object that is
 *   refused is.
 * - What the control plane never reads (managedFields, kubectl's last-applied annotation) is
 *   dropped from every listed and watched object before the informer caches it (strip-fields.ts).
 */
export interface KubernetesSourceOptions extends SourceContext {
  readonly kubeConfig: k8s.KubeConfig;
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Delay before a failed route status write is tried again (default 1 s). */
  readonly statusRetryMs?: number;
}

/**
 * A Watch that always asks for bookmarks, and opens nothing once its source stopped or while
 * its resource is not served (its CRD not installed): the list just said 404, a watch would too.
 */
class BookmarkWatch extends k8s.Watch {
  constructor(
    config: k8s.KubeConfig,
    private readonly stopped: () => boolean,
    private readonly notServed: () => boolean,
  ) {
    super(config);
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ListWatch does not re-check `stopped` after its reconnect delay.
    if (this.stopped()) {
      done(new Error('source stopped'));
      return Promise.resolve(new AbortController());
    }
    if (this.notServed()) {
      done(new NotServedError());
      return Promise.resolve(new AbortController());
    }
    // Stripped before ListWatch caches the object (strip-fields.ts); a BOOKMARK's object carries only metadata.resourceVersion.
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, (phase, apiObj, watchObj) => callback(phase, stripUnusedFields(apiObj), watchObj), done);
  }
}

class NotServedError extends Error {
  constructor() {
    super('resource not served (CRD not installed)');
  }
}

/** The empty lists standing for a resource whose CRD is not installed (404 on list). */
const notServedLists = new WeakSet<object>();

interface Resource {
  readonly name: string;
  readonly informer: k8s.ListWatch<k8s.KubernetesObject>;
  listed: boolean;
  /** The last list answered 404 (CRD not installed): looked for again with backoff, not watched. */
  notServed: boolean;
  connects: number;
  attempt: number;
  timer: Timer | null;
}

type Setter<T> = (ns: string, name: string, v: T | null) => void;

/** The kind of each resource this source watches, to name a rejected object (list items carry no kind). */
const KIND_OF: Readonly<Record<string, string>> = {
  services: 'Service', endpointslices: 'EndpointSlice', pods: 'Pod', trafficpolicies: 'TrafficPolicy', peerauthentications: 'PeerAuthentication',
  meshservices: 'MeshService', authorizationpolicies: 'AuthorizationPolicy', requestauthentications: 'RequestAuthentication',
  ratelimitpolicies: 'RateLimitPolicy', telemetries: 'Telemetry', httproutes: 'HTTPRoute', grpcroutes: 'GRPCRoute', referencegrants: 'ReferenceGrant',
  externalservices: 'ExternalService',
};

export class KubernetesSource implements MeshSource {
  readonly name = 'kubernetes';
  private readonly index: ClusterIndex;
  private readonly committer: IndexCommitter;
  private readonly statusWriter: RouteStatusWriter;
  private readonly resources: Resource[] = [];
  private stopped = false;
  private syncWaiters: (() => void)[] = [];
  /** Objects whose current version failed validation, by resource/namespace/name. */
  private readonly rejections = new Map<string, SourceRejection>();

  constructor(private readonly o: KubernetesSourceOptions) {
    this.index = new ClusterIndex(o.trustDomain);
    const kc = o.kubeConfig;
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const disc = kc.makeApiClient(k8s.DiscoveryV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const statusWriter = (this.statusWriter = new RouteStatusWriter(custom, o.clock, o.logger, o.statusRetryMs));
    this.committer = new IndexCommitter(this.index, o, 'kubernetes', (r) => {
      if (!this.stopped) statusWriter.update(r.routes, r.statuses);
    });
    const idx = this.index;
    this.add('services', '/api/v1/services', () => core.listServiceForAllNamespaces(), parseK8sService, idx.setService.bind(idx));
    this.add('endpointslices', '/apis/discovery.k8s.io/v1/endpointslices', () => disc.listEndpointSliceForAllNamespaces(), parseEndpointSlice, idx.setSlice.bind(idx));
    this.add('pods', '/api/v1/pods', () => core.listPodForAllNamespaces(), parsePod, idx.setPod.bind(idx));
    const crd = (plural: string, group = TRAFFIC_POLICY_GROUP, version = TRAFFIC_POLICY_VERSION) => async () => {
      try {
        return await custom.listClusterCustomObject({ group, version, plural });
      } catch (e) {
        // CRD not installed: run without these objects rather than never becoming ready.
        if ((e as { code?: number }).code === 404) {
          const none = { items: [], metadata: { resourceVersion: '' } };
          notServedLists.add(none);
          return none;
        }
        throw e;
      }
    };
    const crdPath = (plural: string) => `/apis/${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}/${plural}`;
    this.add('trafficpolicies', crdPath('trafficpolicies'), crd('trafficpolicies'), parseTrafficPolicyResource, idx.setPolicy.bind(idx));
    this.add(
      'peerauthentications', crdPath('peerauthentications'), crd('peerauthentications'),
      parsePeerAuthenticationResource, idx.setPeerAuthentication.bind(idx), failClosedPeerAuthentication,
    );
    this.add('meshservices', crdPath('meshservices'), crd('meshservices'), parseMeshService, idx.setMeshService.bind(idx));
    this.add(
      'authorizationpolicies', crdPath('authorizationpolicies'), crd('authorizationpolicies'),
      parseAuthorizationPolicyResource, idx.setAuthorizationPolicy.bind(idx), failClosedAuthorizationPolicy,
    );
    this.add(
      'requestauthentications', crdPath('requestauthentications'), crd('requestauthentications'),
      parseRequestAuthenticationResource, idx.setRequestAuthentication.bind(idx),
    );
    this.add(
      'ratelimitpolicies', crdPath('ratelimitpolicies'), crd('ratelimitpolicies'),
      parseRateLimitPolicyResource, idx.setRateLimitPolicy.bind(idx),
    );
    this.add('telemetries', crdPath('telemetries'), crd('telemetries'), parseTelemetryResource, idx.setTelemetry.bind(idx));
    const gw = (version: string, plural: string) => `/apis/${GATEWAY_GROUP}/${version}/${plural}`;
    this.add('httproutes', gw('v1', 'httproutes'), crd('httproutes', GATEWAY_GROUP, 'v1'), parseHttpRoute, (ns, n, r) => idx.setRoute('HTTPRoute', ns, n, r));
    this.add('grpcroutes', gw('v1', 'grpcroutes'), crd('grpcroutes', GATEWAY_GROUP, 'v1'), parseGrpcRoute, (ns, n, r) => idx.setRoute('GRPCRoute', ns, n, r));
    this.add(
      'referencegrants', gw('v1beta1', 'referencegrants'), crd('referencegrants', GATEWAY_GROUP, 'v1beta1'),
      parseReferenceGrant, idx.setReferenceGrant.bind(idx),
    );
    this.add(
      'externalservices', crdPath('externalservices'), crd('externalservices'),
      parseExternalServiceResource, idx.setExternalService.bind(idx),
    );
  }

  /** The objects whose current version is rejected (their last good version, if any, is in force). */
  rejected(): readonly SourceRejection[] {
    return [...this.rejections.values()];
  }

  /** The same, one line each (/debug/view `errors`, as the directory source's). */
  errors(): readonly string[] {
    return this.rejected().map((r) => `${r.kind} ${r.namespace}/${r.name}: ${r.path || '<root>'}: ${r.reason}`);
  }

  private add<T>(
    name: string,
    path: string,
    list: () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
    parse: Parser<T>,
    set: Setter<T>,
    /** What stands in for a refused object with no last good version (an AuthorizationPolicy, a PeerAuthentication fails closed); absent: nothing. */
    failClosed?: (raw: unknown, e: unknown) => (T & { readonly failClosed?: { readonly enforced: string } }) | null,
  ): void {
    /** Keys whose version in the index is a good one (parsed), not a fail-closed stand-in. */
    const good = new Set<string>();
    const r: Resource = { name, informer: undefined as unknown as k8s.ListWatch<k8s.KubernetesObject>, listed: false, notServed: false, connects: 0, attempt: 0, timer: null };
    const listFn = async (): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> => {
      const l = await list();
      // Before ListWatch caches the items (strip-fields.ts).
      for (const item of l.items) stripUnusedFields(item);
      if (notServedLists.has(l)) {
        // CRD not installed: the source runs without these objects (empty list), and looks
        // again with the error backoff (up to 30 s), its attempt count kept: resetting it
        // here made every look a list and a watch, both 404, every 50-100 ms, forever.
        if (!r.notServed) this.o.logger.warn(`${KIND_OF[name] ?? name} CRD not found; running without ${name} (looked for again with backoff)`, {});
        r.notServed = true;
      } else {
        if (r.notServed) this.o.logger.info(`${KIND_OF[name] ?? name} CRD found; watching ${name}`, {});
        r.notServed = false;
        r.attempt = 0;
      }
      // ListWatch adds the listed items right after this resolves: count the resource
      // as synced only after that (setImmediate runs after those microtasks).
      if (!r.listed)
        setImmediate(() => {
          r.listed = true;
          this.checkSynced();
        });
      return l;
    };
    // ListWatch's own reconnect delay (1 s doubling to 30 s after a watch that ended with
    // no event) on an unref'd timer, so a stopped source never holds the process open.
    const delayFn = (ms: number): Promise<void> =>
      new Promise((resolve) => {
        if (this.stopped) return resolve();
        setTimeout(resolve, ms).unref();
      });
    const watch = new BookmarkWatch(this.o.kubeConfig, () => this.stopped, () => r.notServed);
    const informer = new k8s.ListWatch<k8s.KubernetesObject>(path, watch, listFn, false, undefined, undefined, { delayFn });
    (r as { informer: k8s.ListWatch<k8s.KubernetesObject> }).informer = informer;
    const upsert = (obj: k8s.KubernetesObject): void => {
      r.attempt = 0;
      const ns = obj.metadata?.namespace ?? 'default';
      const objName = obj.metadata?.name ?? '';
      const key = `${name}/${ns}/${objName}`;
      try {
        const v = parse(obj, '');
        set(ns, objName, v);
        // An AuthorizationPolicy with a value that can never match (authzNeverMatching): in force as written, reported.
        const warnings = (v as { readonly warnings?: readonly string[] }).warnings ?? [];
        if (warnings.length > 0) this.o.logger.warn('object accepted with values that never match', { resource: name, object: `${ns}/${objName}`, warnings });
        good.add(key);
        this.rejections.delete(key);
      } catch (e) {
        this.o.metrics.invalidObjects.inc({ source: 'kubernetes' });
        // The last good version this process read stays; without one, a stand-in that fails closed (when the kind has one).
        const stand = good.has(key) ? null : (failClosed?.(obj, e) ?? null);
        this.rejections.set(key, rejectionOf(KIND_OF[name] ?? name, ns, objName, e, undefined, stand?.failClosed?.enforced));
        if (!stand) {
          this.o.logger.warn('invalid object rejected; the last good version stays', { resource: name, object: `${ns}/${objName}`, error: (e as Error).message });
          return;
        }
        this.o.logger.warn('invalid object rejected with no last good version: enforced fail-closed', {
          resource: name, object: `${ns}/${objName}`, error: (e as Error).message, enforced: stand.failClosed?.enforced,
        });
        set(ns, objName, stand);
      }
      this.committer.touch();
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj) => {
      const key = `${name}/${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
      this.rejections.delete(key);
      good.delete(key);
      set(obj.metadata?.namespace ?? 'default', obj.metadata?.name ?? '', null);
      this.committer.touch();
    });
    informer.on('connect', () => {
      if (r.connects++ > 0) {
        const reason = informer.latestResourceVersion() === '' ? 'relist' : 'reconnect';
        this.o.metrics.watchRestarts.inc({ resource: name, reason });
        this.o.logger.debug('watch restarting', { resource: name, reason });
      }
    });
    informer.on('error', (err) => {
      if (this.stopped) return;
      const delay = backoffDelay(r.attempt++, this.o.random, this.o.backoff?.initialMs ?? 100, this.o.backoff?.maxMs ?? 30_000);
      this.o.metrics.watchRestarts.inc({ resource: name, reason: 'error' });
      if (err instanceof NotServedError) this.o.logger.debug('CRD still not installed; looking again', { resource: name, retryInMs: Math.round(delay) });
      else this.o.logger.warn('watch failed; restarting', { resource: name, error: (err as Error)?.message ?? String(err), retryInMs: Math.round(delay) });
      r.timer = this.o.clock.setTimeout(() => {
        r.timer = null;
        if (!this.stopped) void informer.start();
      }, delay);
    });
    this.resources.push(r);
  }

  private checkSynced(): void {
    if (this.resources.every((r) => r.listed)) for (const w of this.syncWaiters.splice(0)) w();
  }

  /** Resolves once every resource has been listed (retrying failed lists with backoff). */
  async start(): Promise<void> {
    this.stopped = false;
    const synced = new Promise<void>((r) => this.syncWaiters.push(r));
    for (const r of this.resources) void r.informer.start();
    this.checkSynced();
    await synced;
    if (this.stopped) return;
    this.committer.flushNow();
    this.o.store.markReady();
    this.o.logger.info('kubernetes source synced', { services: this.o.store.view.services.size });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.committer.cancel();
    this.statusWriter.stop();
    for (const r of this.resources) {
      if (r.timer) this.o.clock.clearTimeout(r.timer);
      await r.informer.stop();
    }
    for (const w of this.syncWaiters.splice(0)) w();
  }
}
