import type { ExternalDestination } from '../egress/egress-policy.js';
import type { Endpoint, Service, ServicePort } from '../../contract/model.js';
import { encodePeerMetadata, parsePeerMetadata } from './peer-metadata.js';
import { RequestSeries } from './request-series.js';

/**
 * Istio's standard metric labels (istio.io docs/reference/config/metrics), in Istio's
 * order. request_protocol is `http` or `grpc` on the request metrics and `tcp` on the
 * istio_tcp_* ones, which carry neither response_code nor grpc_response_status (as Istio's).
 */
export const REQUEST_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
] as const;
export type RequestLabel = (typeof REQUEST_LABELS)[number];
export type TcpLabel = Exclude<RequestLabel, 'response_code' | 'grpc_response_status'>;
export const TCP_LABELS = REQUEST_LABELS.filter((l): l is TcpLabel => l !== 'response_code' && l !== 'grpc_response_status');

type Base = Omit<Record<RequestLabel, string>, 'request_protocol' | 'response_code' | 'grpc_response_status' | 'response_flags'>;
export type RequestLabels = Readonly<Record<RequestLabel, string>>;
export type TcpLabels = Readonly<Record<TcpLabel, string>>;

const UNKNOWN = 'unknown';
/** The inbound key of "no wren-peer header" (a header value is never this: it holds no NUL). */
const NO_PEER = '\0';

/** prom-client prints labels in the object's key order: Istio's order, whatever order they were built in. */
function inOrder<K extends string>(names: readonly K[], values: Record<K, string>): Readonly<Record<K, string>> {
  const out = {} as Record<K, string>;
  for (const n of names) out[n] = values[n];
  return Object.freeze(out);
}
const orUnknown = (v: string | undefined): string => (v ? v : UNKNOWN);

/**
 * Distinct (protocol, response code, gRPC status, flags) series kept per (reporter, source,
 * destination) label values. A workload pair really has a few dozen (the status codes its
 * app uses, the 17 gRPC codes, the error table's flags); the values are the upstream's to
 * choose, though (any status 100-999 beside any gRPC code), and each is four series (the
 * counter and three histograms, 40 samples), kept for the proxy's life: one endpoint
 * answering ever other statuses made the sidecars calling it grow by about 100,000 series.
 * Past this, a new combination is counted in the label set's overflow series
 * (response_code="unknown", grpc_response_status "unknown" for gRPC, response_flags "-") and in
 * wren_limit_exceeded_total{limit="request-series-per-peer"} (docs/observability.md).
 */
export const MAX_OUTCOMES_PER_PEER = 256;

/** The series of one (reporter, source, destination), shared by the label sets that have those values. */
class Outcomes {
  readonly byKey = new Map<string, RequestSeries>();
  overflowHttp: RequestSeries | undefined;
  overflowGrpc: RequestSeries | undefined;
}

/** Where a label set reports that it reached MAX_OUTCOMES_PER_PEER (the WorkloadLabels that made it). */
interface OutcomesLimit {
  onOutcomesLimit(direction: 'inbound' | 'outbound'): void;
  outcomesOf(base: Base): Outcomes;
}

/**
 * The label values of one (reporter, source, destination): built once and kept, with the
 * full label objects of each (protocol, response code, gRPC status, flags) seen, so a
 * request's metrics reuse objects instead of building 19 labels again.
 */
export class LabelSet {
  readonly tcp: TcpLabels;
  /** Shared with every label set of the same values, so the bound holds per series, not per object (endpoints are new objects on every push). */
  private readonly outcomes: Outcomes;
  /** The last series `series` found (its labels hold the four values it was found by). */
  private last: RequestSeries | null = null;

  constructor(
    private readonly base: Base,
    private readonly limit: OutcomesLimit,
  ) {
    this.tcp = inOrder(TCP_LABELS, { ...base, request_protocol: 'tcp', response_flags: '-' });
    this.outcomes = limit.outcomesOf(base);
  }

  labels(protocol: 'http' | 'grpc', code: string, grpc: string, flags: string): RequestLabels {
    return this.series(protocol, code, grpc, flags).labels as RequestLabels;
  }

  /**
   * The request metrics' series of these labels (request-series.ts: recorded without hashing the labels per request).
   * The last series found is kept, and taken back when its labels hold the same four
   * values: a workload's responses mostly repeat one outcome, and the key string built,
   * hashed and looked up per request was about 1 % of the outbound sidecar at HTTP/1.1
   * saturation (docs/benchmarks.md, "thirteenth session").
   */
  series(protocol: 'http' | 'grpc', code: string, grpc: string, flags: string): RequestSeries {
    const last = this.last;
    if (last !== null) {
      const l = last.labels;
      if (l.response_code === code && l.request_protocol === protocol && l.response_flags === flags && l.grpc_response_status === grpc) return last;
    }
    const key = `${protocol} ${code} ${grpc} ${flags}`;
    const o = this.outcomes;
    let s = o.byKey.get(key);
    if (s === undefined) {
      if (o.byKey.size >= MAX_OUTCOMES_PER_PEER) {
        this.limit.onOutcomesLimit(this.base.reporter === 'source' ? 'outbound' : 'inbound');
        // Not kept as `last`: the outcomes that have series stay on the fast path.
        return protocol === 'grpc' ? (o.overflowGrpc ??= this.make('grpc', UNKNOWN, UNKNOWN, '-')) : (o.overflowHttp ??= this.make('http', UNKNOWN, '', '-'));
      }
      s = this.make(protocol, code, grpc, flags);
      o.byKey.set(key, s);
    }
    this.last = s;
    return s;
  }

  private make(protocol: 'http' | 'grpc', code: string, grpc: string, flags: string): RequestSeries {
    return new RequestSeries(inOrder(REQUEST_LABELS, { ...this.base, request_protocol: protocol, response_code: code, grpc_response_status: grpc, response_flags: flags }));
  }
}

/** Istio's names for traffic out of the mesh: let through, or refused (REGISTRY_ONLY). */
export type EgressCluster = 'PassthroughCluster' | 'BlackHoleCluster';

/** The cluster of an HTTP request out of the mesh to no declared ExternalService, by its response's proxy error: refused (REGISTRY_ONLY) or let through. */
export function undeclaredEgressCluster(proxyError: string | undefined): EgressCluster {
  return proxyError === 'egress-refused' ? 'BlackHoleCluster' : 'PassthroughCluster';
}

interface PortEntry {
  none: LabelSet | undefined;
  readonly byEndpoint: WeakMap<Endpoint, LabelSet>;
}

/** At most this many inbound (peer identity, peer metadata) pairs keep their labels cached. */
const MAX_INBOUND_SETS = 1024;

/**
 * Distinct `wren-peer` values believed from one caller identity over the proxy's life. A
 * caller really sends one per (its workload version, service it routed to); a peer that
 * sends ever new values (a compromised pod with a valid certificate) would otherwise add
 * metric series without end: past this its new values are ignored (source labels
 * `unknown`), counted in wren_limit_exceeded_total{limit="peer-metadata-values"}.
 */
export const MAX_PEER_VALUES_PER_CALLER = 64;

/**
 * This proxy's own workload (from config: the injector's WREN_WORKLOAD_*), which is the
 * source on the outbound side and the destination on the inbound side, and the label sets
 * built from it: per (service port, endpoint) outbound, the endpoint's workload coming
 * from the control plane (contract Endpoint.workload); per (peer identity, peer metadata)
 * inbound, the caller's workload from its `wren-peer` header (peer-metadata.ts).
 */
export class WorkloadLabels {
  private readonly outbound = new WeakMap<ServicePort, PortEntry>();
  private noRoute: LabelSet | undefined;
  private readonly egressClusters = new Map<EgressCluster, LabelSet>();
  private readonly externals = new WeakMap<ExternalDestination, LabelSet>();
  /** Inbound label sets by caller identity, then by its `wren-peer` value (NO_PEER: none); inboundSets counts them all. */
  private readonly inbound = new Map<string, Map<string, LabelSet>>();
  private inboundSets = 0;
  private plaintextSet: LabelSet | undefined;
  private readonly peerHeaders = new WeakMap<Service, string>();
  private readonly bareHeader: string;
  /** The `wren-peer` values believed per caller identity (never cleared: the bound on series). */
  private readonly believed = new Map<string, Set<string>>();
  /** Called when a caller's value is ignored for MAX_PEER_VALUES_PER_CALLER (ProxyMetrics counts it). */
  onPeerValuesLimit: () => void = () => undefined;
  /** Called for each request counted in an overflow series for MAX_OUTCOMES_PER_PEER (ProxyMetrics counts it). */
  onOutcomesLimit: (direction: 'inbound' | 'outbound') => void = () => undefined;
  /** The series of each (reporter, source, destination) label values seen (as long-lived as prom-client's own series of them). */
  private readonly outcomes = new Map<string, Outcomes>();

  constructor(
    readonly workload: { readonly name: string; readonly namespace: string; readonly app: string; readonly version: string },
    /** This proxy's SPIFFE ID ('' = none yet). */
    private readonly principal: () => string,
  ) {
    this.bareHeader = encodePeerMetadata(workload, undefined);
  }

  /** The one outcome table of these label values (LabelSet: made once per label set, not per request). */
  outcomesOf(base: Base): Outcomes {
    const key = JSON.stringify(Object.values(base));
    let o = this.outcomes.get(key);
    if (o === undefined) this.outcomes.set(key, (o = new Outcomes()));
    return o;
  }

  /** The `wren-peer` value for a request to `service` (cached per service object). */
  peerHeader(service: Service | undefined): string {
    if (!service) return this.bareHeader;
    let h = this.peerHeaders.get(service);
    if (h === undefined) {
      h = encodePeerMetadata(this.workload, service);
      this.peerHeaders.set(service, h);
    }
    return h;
  }

  /**
   * reporter="source": this workload calls the routed service's endpoint. No route: the
   * destination is all `unknown` (the authority the client sent is never a label value).
   * Istio's source reporter says connection_security_policy="unknown".
   */
  forOutbound(route: { readonly service: Service; readonly port: ServicePort } | undefined, ep: Endpoint | undefined): LabelSet {
    if (!route) return (this.noRoute ??= new LabelSet(this.sourceBase(undefined, undefined), this));
    let entry = this.outbound.get(route.port);
    if (!entry) {
      entry = { none: undefined, byEndpoint: new WeakMap() };
      this.outbound.set(route.port, entry);
    }
    if (!ep) return (entry.none ??= new LabelSet(this.sourceBase(route.service, undefined), this));
    let set = entry.byEndpoint.get(ep);
    if (!set) {
      set = new LabelSet(this.sourceBase(route.service, ep), this);
      entry.byEndpoint.set(ep, set);
    }
    return set;
  }

  /**
   * reporter="source" for traffic to a destination outside the mesh that no ExternalService
   * declares, named as Istio names its clusters: `PassthroughCluster` (let through:
   * ALLOW_ANY) and `BlackHoleCluster` (refused in REGISTRY_ONLY), in
   * destination_service_name, as Istio's stats filter labels that traffic (and Kiali draws
   * those nodes); every other destination label is `unknown` (the address dialled is never
   * a label value). Declared destinations are forExternal's.
   */
  forEgress(cluster: EgressCluster): LabelSet {
    let set = this.egressClusters.get(cluster);
    if (!set) {
      set = new LabelSet({ ...this.sourceBase(undefined, undefined), destination_service_name: cluster }, this);
      this.egressClusters.set(cluster, set);
    }
    return set;
  }

  /**
   * reporter="source" for traffic to a host an ExternalService declares, as Istio labels
   * ServiceEntry traffic: destination_service and destination_service_name the declared
   * host (a wildcard as declared), destination_service_namespace the ExternalService's
   * namespace; the workload labels `unknown` (no mesh workload answers). One label set per
   * declared (host, port), made when first used (a WeakMap: a policy replaced takes its sets with it).
   */
  forExternal(dest: ExternalDestination): LabelSet {
    let set = this.externals.get(dest);
    if (!set) {
      set = new LabelSet({ ...this.sourceBase(undefined, undefined), destination_service: dest.host, destination_service_name: dest.host, destination_service_namespace: orUnknown(dest.namespace) }, this);
      this.externals.set(dest, set);
    }
    return set;
  }

  /**
   * reporter="destination": a caller (its verified SPIFFE ID, '' for plaintext) calls this
   * workload. `peer` is its `wren-peer` header, used only when `secure` (an mTLS peer) and
   * when its namespace is the one in the caller's SPIFFE ID.
   */
  forInbound(principal: string, peer: string | undefined, secure: boolean): LabelSet {
    if (!secure) return (this.plaintextSet ??= new LabelSet(this.destinationBase('', undefined, 'none'), this));
    // By identity, then by header value: two look-ups of the strings the request has,
    // instead of a key joined from both (a new string to build and hash per request).
    let byPeer = this.inbound.get(principal);
    const peerKey = peer ?? NO_PEER;
    let set = byPeer?.get(peerKey);
    if (!set) {
      set = new LabelSet(this.destinationBase(principal, peer === undefined ? undefined : this.admit(principal, peer), 'mutual_tls'), this);
      if (this.inboundSets >= MAX_INBOUND_SETS) {
        this.inbound.clear();
        this.inboundSets = 0;
        byPeer = undefined;
      }
      if (!byPeer) this.inbound.set(principal, (byPeer = new Map()));
      byPeer.set(peerKey, set);
      this.inboundSets++;
    }
    return set;
  }

  /** `peer` if this caller may add it to the values it has (MAX_PEER_VALUES_PER_CALLER), else undefined. */
  private admit(principal: string, peer: string): string | undefined {
    let seen = this.believed.get(principal);
    if (seen?.has(peer)) return peer;
    if (parsePeerMetadata(peer) === null) return peer; // ignored whole anyway (destinationBase): no new series
    if (!seen) this.believed.set(principal, (seen = new Set()));
    if (seen.size >= MAX_PEER_VALUES_PER_CALLER) {
      this.onPeerValuesLimit();
      return undefined;
    }
    seen.add(peer);
    return peer;
  }

  private sourceBase(service: Service | undefined, ep: Endpoint | undefined): Base {
    const w = this.workload;
    const dst = ep?.workload;
    return {
      reporter: 'source',
      source_workload: orUnknown(w.name),
      source_workload_namespace: orUnknown(w.namespace),
      source_principal: orUnknown(this.principal()),
      source_app: orUnknown(w.app),
      source_version: orUnknown(w.version),
      destination_workload: orUnknown(dst?.name),
      destination_workload_namespace: orUnknown(dst?.namespace),
      destination_principal: orUnknown(ep?.identity),
      destination_app: orUnknown(dst?.app),
      destination_version: orUnknown(dst?.version),
      destination_service: service ? `${service.name}.${service.namespace}.svc.cluster.local` : UNKNOWN,
      destination_service_name: orUnknown(service?.name),
      destination_service_namespace: orUnknown(service?.namespace),
      connection_security_policy: UNKNOWN,
    };
  }

  private destinationBase(principal: string, peerHeader: string | undefined, policy: 'mutual_tls' | 'none'): Base {
    const w = this.workload;
    let peer = peerHeader === undefined ? null : parsePeerMetadata(peerHeader);
    // The peer's namespace must be its certificate's: a sidecar cannot speak for another namespace's workload.
    if (peer && peer.namespace !== '' && !principal.includes(`/ns/${peer.namespace}/sa/`)) peer = null;
    return {
      reporter: 'destination',
      source_workload: orUnknown(peer?.workload),
      source_workload_namespace: orUnknown(peer?.namespace),
      source_principal: orUnknown(principal),
      source_app: orUnknown(peer?.app),
      source_version: orUnknown(peer?.version),
      destination_workload: orUnknown(w.name),
      destination_workload_namespace: orUnknown(w.namespace),
      destination_principal: policy === 'mutual_tls' ? orUnknown(this.principal()) : UNKNOWN,
      destination_app: orUnknown(w.app),
      destination_version: orUnknown(w.version),
      destination_service: peer?.serviceName ? `${peer.serviceName}.${peer.serviceNamespace}.svc.cluster.local` : UNKNOWN,
      destination_service_name: orUnknown(peer?.serviceName),
      destination_service_namespace: orUnknown(peer?.serviceNamespace),
      connection_security_policy: policy,
    };
  }
}
