import { parseRateLimitPolicyResource, type KRateLimitPolicy } from '../translate/ratelimit-objects.js';
import { parseAllDocuments } from 'yaml';
import type { Service } from '../../contract/model.js';
import { ConfigError, type Parser } from '../../common/schema.js';
import {
  parseEndpointSlice, parseK8sService, parseMeshService, parsePod, parseTrafficPolicyResource,
  type KEndpointSlice, type KPod, type KService, type KTrafficPolicy,
} from '../translate/k8s-objects.js';
import type { ClusterObjects } from '../translate/translate.js';
import {
  failClosedAuthorizationPolicy, failClosedPeerAuthentication, parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource,
  type KAuthorizationPolicy, type KPeerAuthentication, type KRequestAuthentication,
} from '../translate/policy-objects.js';
import type { PolicyObjects } from '../translate/inbound-policy.js';
import { parseTelemetryResource, type KTelemetry } from '../translate/telemetry-objects.js';
import { parseGrpcRoute, parseHttpRoute, parseReferenceGrant, type KReferenceGrant, type KRoute } from '../translate/route-objects.js';
import { parseExternalServiceResource } from '../translate/external-service-objects.js';
import type { ExternalService } from '../../contract/egress.js';
import { rejectionOf, type SourceRejection } from './source-rejection.js';

/**
 * Reads Kubernetes-shaped manifests (multi-document YAML or JSON, `kind: List` too) into
 * validated objects. Objects of other kinds (a Deployment, a Gateway, a typo in `kind`)
 * are not read; they are listed in `ignored` so the source can say so (log, metric,
 * /debug/view) instead of dropping them without a word. Each object is validated
 * alone: a bad one is reported as `<file>: <field path>: <problem>` and, if the same
 * object (kind/namespace/name) was good in the previous version of the file, that
 * last good version is kept. A refused AuthorizationPolicy or PeerAuthentication with no last
 * good version (the control plane just started, or the object is new) is enforced
 * fail-closed instead (failClosedAuthorizationPolicy, failClosedPeerAuthentication: its
 * rejection says so in `failClosed`). An object defined twice is kept once, as Kubernetes refuses a
 * second create (AlreadyExists): in one file the first document wins; across files the one
 * already in force (then the first file by name); the other is rejected, naming both.
 */
export type ManifestObject = { readonly at: string } & (
  | { kind: 'Service'; key: string; value: KService }
  | { kind: 'EndpointSlice'; key: string; value: KEndpointSlice }
  | { kind: 'Pod'; key: string; value: KPod }
  | { kind: 'TrafficPolicy'; key: string; value: KTrafficPolicy }
  | { kind: 'MeshService'; key: string; value: Service }
  | { kind: 'PeerAuthentication'; key: string; value: KPeerAuthentication }
  | { kind: 'AuthorizationPolicy'; key: string; value: KAuthorizationPolicy }
  | { kind: 'RequestAuthentication'; key: string; value: KRequestAuthentication }
  | { kind: 'RateLimitPolicy'; key: string; value: KRateLimitPolicy }
  | { kind: 'Telemetry'; key: string; value: KTelemetry }
  | { kind: 'HTTPRoute'; key: string; value: KRoute }
  | { kind: 'GRPCRoute'; key: string; value: KRoute }
  | { kind: 'ReferenceGrant'; key: string; value: KReferenceGrant }
  | { kind: 'ExternalService'; key: string; value: ExternalService });

const PARSERS: Record<ManifestObject['kind'], Parser<unknown>> = {
  Service: parseK8sService,
  EndpointSlice: parseEndpointSlice,
  Pod: parsePod,
  TrafficPolicy: parseTrafficPolicyResource,
  MeshService: parseMeshService,
  PeerAuthentication: parsePeerAuthenticationResource,
  AuthorizationPolicy: parseAuthorizationPolicyResource,
  RequestAuthentication: parseRequestAuthenticationResource,
  RateLimitPolicy: parseRateLimitPolicyResource,
  Telemetry: parseTelemetryResource,
  HTTPRoute: parseHttpRoute,
  GRPCRoute: parseGrpcRoute,
  ReferenceGrant: parseReferenceGrant,
  ExternalService: parseExternalServiceResource,
};

/** An object the directory source does not read (its kind is not one of PARSERS). */
export interface IgnoredObject {
  readonly file: string;
  /** '' when the document has no string `kind`. */
  readonly kind: string;
  readonly apiVersion: string;
  readonly namespace: string;
  readonly name: string;
}

export interface LoadedFile {
  readonly objects: ReadonlyMap<string, ManifestObject>;
  readonly errors: readonly string[];
  /** The same problems, by object (kind/namespace/name, field path, reason). */
  readonly rejected: readonly SourceRejection[];
  readonly ignored: readonly IgnoredObject[];
  /**
   * Objects read and in force whose meaning is probably not what was meant: an
   * AuthorizationPolicy with a value that can never match (its `warnings`), as
   * `<file>: <Kind> <namespace>/<name>: <field path>: <problem>`. Logged by the directory
   * source, printed by `wren check`; the object is enforced as written.
   */
  readonly warnings: readonly string[];
}

const describe = (file: string, e: unknown): string =>
  e instanceof ConfigError ? `${file}: ${e.path || '<root>'}: ${e.problem}` : `${file}: ${(e as Error).message}`;

/** The file as a whole is unreadable: nothing in it changes, it keeps all it had (the last good objects). */
function keepAll(file: string, problems: readonly string[], previous: LoadedFile | undefined): LoadedFile {
  return {
    objects: previous?.objects ?? new Map(), errors: problems.map((e) => `${file}: ${e}`), ignored: previous?.ignored ?? [], warnings: previous?.warnings ?? [],
    rejected: problems.map((reason) => ({ kind: '', namespace: '', name: '', path: '', reason, file })),
  };
}

export function loadManifestFile(file: string, content: string, previous: LoadedFile | undefined): LoadedFile {
  const docs = parseAllDocuments(content);
  const list = Array.isArray(docs) ? docs : [docs];
  const syntax = list.flatMap((d) => d.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  // A file that is not even YAML (say, half-saved) changes nothing: keep all it had.
  if (syntax.length > 0) return keepAll(file, syntax, previous);
  const objects = new Map<string, ManifestObject>();
  const errors: string[] = [];
  const rejected: SourceRejection[] = [];
  const ignored: IgnoredObject[] = [];
  const warnings: string[] = [];
  /** Each object with where it is in the file: `document 2` (counted from 1), `document 2, items[0]` in a List. */
  const raws: { raw: unknown; at: string }[] = [];
  const unreadable: string[] = [];
  list.forEach((d, i) => {
    let v: unknown;
    try {
      v = d.toJS();
    } catch (e) {
      // Valid YAML that cannot become data: about 100 aliases or more (yaml's maxAliasCount,
      // its guard against alias bombs) or a merge key to an undefined anchor. It is this
      // file's problem alone, so it is handled as a syntax error is, not left to abort the scan.
      unreadable.push(`YAML: document ${i + 1}: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
    if (v && typeof v === 'object' && (v as { kind?: unknown }).kind === 'List' && Array.isArray((v as { items?: unknown }).items))
      raws.push(...(v as { items: unknown[] }).items.map((raw, j) => ({ raw, at: `document ${i + 1}, items[${j}]` })));
    else raws.push({ raw: v, at: `document ${i + 1}` });
  });
  if (unreadable.length > 0) return keepAll(file, unreadable, previous);
  const firstAt = new Map<string, string>();
  for (const { raw, at } of raws) {
    if (!raw || typeof raw !== 'object') continue;
    const r = raw as { kind?: unknown; apiVersion?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
    const kind = r.kind as ManifestObject['kind'];
    // Absent, YAML null (`namespace:` rendered empty) or "": `default`, as kubectl reads it; failClosedAuthorizationPolicy scopes a stand-in the same way.
    const namespace = typeof r.metadata?.namespace === 'string' && r.metadata.namespace !== '' ? r.metadata.namespace : 'default';
    if (typeof kind !== 'string' || !Object.hasOwn(PARSERS, kind)) {
      const str = (v: unknown) => (typeof v === 'string' ? v : '');
      ignored.push({ file, kind: str(kind), apiVersion: str(r.apiVersion), namespace, name: str(r.metadata?.name) });
      continue;
    }
    const key = `${kind}/${namespace}/${String(r.metadata?.name)}`;
    const first = firstAt.get(key);
    if (first !== undefined) {
      // Not "the later one wins": an edit that pastes a second copy must not replace the one in force without a word.
      const d = duplicate(file, key, at, `${first} of this file`);
      errors.push(d.error);
      rejected.push(d.rejection);
      continue;
    }
    firstAt.set(key, at);
    try {
      const o = { kind, key, at, value: PARSERS[kind](raw, '') } as ManifestObject;
      objects.set(key, o);
      if (o.kind === 'AuthorizationPolicy') for (const w of o.value.warnings ?? []) warnings.push(`${file}: ${kind} ${namespace}/${String(r.metadata?.name)}: ${w}`);
    } catch (e) {
      errors.push(describe(file, e));
      const last = previous?.objects.get(key);
      // The last good version stays; a fail-closed stand-in is no good version: made again from this one.
      const stand = last && !isFailClosed(last) ? null : standIn(kind, key, at, raw, e);
      rejected.push(rejectionOf(kind, namespace, String(r.metadata?.name ?? ''), e, file, stand?.value.failClosed?.enforced));
      if (stand) objects.set(key, stand);
      else if (last && !isFailClosed(last)) objects.set(key, last);
    }
  }
  return { objects, errors, rejected, ignored, warnings };
}

const isFailClosed = (o: ManifestObject): boolean =>
  (o.kind === 'AuthorizationPolicy' || o.kind === 'PeerAuthentication') && o.value.failClosed !== undefined;

/** The fail-closed stand-in for a refused object of a kind that has one (AuthorizationPolicy, PeerAuthentication); else null. */
function standIn(kind: string, key: string, at: string, raw: unknown, e: unknown): Extract<ManifestObject, { kind: 'AuthorizationPolicy' | 'PeerAuthentication' }> | null {
  if (kind === 'AuthorizationPolicy') {
    const value = failClosedAuthorizationPolicy(raw, e);
    return value ? { kind, key, at, value } : null;
  }
  if (kind === 'PeerAuthentication') {
    const value = failClosedPeerAuthentication(raw, e);
    return value ? { kind, key, at, value } : null;
  }
  return null;
}

/** The object `key` at `at` in `file` is ignored: it is already defined at `kept`. */
function duplicate(file: string, key: string, at: string, kept: string): { error: string; rejection: SourceRejection } {
  const [kind, namespace, ...name] = key.split('/');
  const reason = `${at}: ${kind} ${namespace}/${name.join('/')} is already defined in ${kept}, which stays in force; this one is ignored`;
  return { error: `${file}: metadata.name: ${reason}`, rejection: { kind, namespace, name: name.join('/'), path: 'metadata.name', reason, file } };
}

/**
 * Merge files (in the order given, sorted by name) into one object set. An object defined in
 * several files is taken from the file that `established` says holds it now (the previous
 * merge's `owners`) while that file still defines it, else from the first file; each other
 * definition is rejected, naming both files. A parsed definition always wins over a
 * fail-closed stand-in for a refused copy (the refused copy is still reported as refused).
 */
export function mergeManifests(files: readonly [string, LoadedFile][], established: ReadonlyMap<string, string> = new Map()): {
  objects: ClusterObjects & PolicyObjects & { routes: KRoute[]; referenceGrants: KReferenceGrant[] };
  errors: string[];
  rejected: SourceRejection[];
  /** The file each object was taken from: pass it as the next merge's `established`. */
  owners: Map<string, string>;
} {
  const errors: string[] = [];
  const rejected: SourceRejection[] = [];
  const out = {
    services: [] as KService[], slices: [] as KEndpointSlice[], pods: [] as KPod[], policies: [] as KTrafficPolicy[], meshServices: [] as Service[],
    peerAuthentications: [] as KPeerAuthentication[], authorizationPolicies: [] as KAuthorizationPolicy[], requestAuthentications: [] as KRequestAuthentication[],
    telemetries: [] as KTelemetry[], routes: [] as KRoute[], referenceGrants: [] as KReferenceGrant[], rateLimitPolicies: [] as KRateLimitPolicy[],
    externalServices: [] as ExternalService[],
  };
  const definitions = new Map<string, { file: string; o: ManifestObject }[]>();
  for (const [file, loaded] of files) {
    for (const o of loaded.objects.values()) {
      const defs = definitions.get(o.key);
      if (defs) defs.push({ file, o });
      else definitions.set(o.key, [{ file, o }]);
    }
  }
  const owners = new Map<string, string>();
  for (const [key, defs] of definitions) {
    // The object in force stays, as Kubernetes refuses a second create: a new file that sorts first must not take it over.
    // A parsed definition wins over a fail-closed stand-in (a refused copy in another file is no definition to keep).
    const parsed = defs.filter((d) => !isFailClosed(d.o));
    const pool = parsed.length > 0 ? parsed : defs;
    const kept = pool.find((d) => d.file === established.get(key)) ?? pool[0];
    owners.set(key, kept.file);
    for (const d of defs) {
      if (d === kept) continue;
      const dup = duplicate(d.file, key, d.o.at, `${kept.file} (${kept.o.at})`);
      errors.push(dup.error);
      rejected.push(dup.rejection);
    }
    const o = kept.o;
    if (o.kind === 'Service') out.services.push(o.value);
    else if (o.kind === 'EndpointSlice') out.slices.push(o.value);
    else if (o.kind === 'Pod') out.pods.push(o.value);
    else if (o.kind === 'TrafficPolicy') out.policies.push(o.value);
    else if (o.kind === 'PeerAuthentication') out.peerAuthentications.push(o.value);
    else if (o.kind === 'AuthorizationPolicy') out.authorizationPolicies.push(o.value);
    else if (o.kind === 'RequestAuthentication') out.requestAuthentications.push(o.value);
    else if (o.kind === 'Telemetry') out.telemetries.push(o.value);
    else if (o.kind === 'HTTPRoute' || o.kind === 'GRPCRoute') out.routes.push(o.value);
    else if (o.kind === 'ReferenceGrant') out.referenceGrants.push(o.value);
    else if (o.kind === 'RateLimitPolicy') out.rateLimitPolicies.push(o.value);
    else if (o.kind === 'ExternalService') out.externalServices.push(o.value);
    else out.meshServices.push(o.value);
  }
  return { objects: out, errors, rejected, owners };
}
