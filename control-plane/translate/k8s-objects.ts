import { isIP } from 'node:net';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Protocol, Service, TrafficPolicy, Workload } from '../../contract/model.js';
import { podWorkload, type PodMeta } from './pod-workload.js';
import { A, parseOpaquePorts } from '../injector/annotations.js';
import { parseEndpoint, parseService, parseTrafficPolicy } from '../../contract/parse.js';
import {
  arr, bool, fail, literal, num, obj, optional, record, str, withDefault,
  type Parser,
} from '../../common/schema.js';

/**
 * Validating parsers from Kubernetes objects (real API JSON, or the typed objects of
 * @kubernetes/client-node, whose field names are the same) to the few fields the
 * translation needs. Unknown fields are allowed (API objects carry many); the fields we
 * read are checked and errors name their path (`spec.ports[0].port: ...`).
 */

export interface KService {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIPs: readonly string[];
  readonly ports: readonly { readonly name: string; readonly port: number; readonly protocol: Protocol }[];
  readonly externalName: boolean;
  /**
   * The Service's primary IP family: its first cluster IP's, else spec.ipFamilies[0] (a headless
   * Service), else absent. Of a dual-stack pod, the endpoint of this family is the one kept
   * (translate.ts portEndpoints).
   */
  readonly primaryFamily?: 'IPv4' | 'IPv6';
}

export interface KSliceEndpoint {
  readonly addresses: readonly string[];
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly zone: string;
  /** targetRef pod name, when the endpoint is a pod. */
  readonly pod: string | null;
  /** targetRef.uid: which incarnation of that pod ('' when absent). */
  readonly podUid: string;
}

export interface KEndpointSlice {
  readonly name: string;
  readonly namespace: string;
  /** Label kubernetes.io/service-name; '' when absent (then the slice belongs to no Service). */
  readonly service: string;
  readonly addressType: string;
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  readonly endpoints: readonly KSliceEndpoint[];
}

export interface KPod {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** metadata.uid ('' when absent, as in a manifest): a pod created again under its name has a new one. */
  readonly uid: string;
  readonly meshed: boolean;
  /** Inbound sidecar port when meshed. */
  readonly proxyPort: number | null;
  /** metadata.labels (policy selectors match them). */
  readonly labels: Readonly<Record<string, string>>;
  /** The pod's workload (owner, app, version labels; pod-workload.ts), for the endpoints' metrics labels. */
  readonly workload: Workload;
  /**
   * The ports the pod declares opaque itself (annotation wren.io/opaque-ports), sorted; []:
   * none. Its endpoints on them carry Endpoint.opaque, so callers skip detection there
   * (podOpaquePorts()).
   */
  readonly opaquePorts: readonly number[];
}

export interface KTrafficPolicy {
  readonly name: string;
  readonly namespace: string;
  /** Name of the Service (or MeshService) in the same namespace. */
  readonly target: string;
  /** Service ports the policy is for; empty = all. */
  readonly ports: readonly number[];
  readonly policy: TrafficPolicy;
  /** metadata.creationTimestamp (ISO), for Gateway-API-style conflict resolution (oldest wins). */
  readonly createdAt: string;
}

/**
 * The sidecar container, as the injector names it (control-plane/injector/sidecar.ts), and
 * its inbound port's name; test/meshed-pods.test.ts checks an injected pod parses as meshed.
 */
const MESH_PROXY_CONTAINER = 'wren-proxy';
/** The proxy's environment variable for protocol.inboundOpaquePorts (proxy/config/proxy-config.ts), as the injector sets it. */
const OPAQUE_PORTS_ENV = 'WREN_OPAQUE_PORTS';
const MESH_INBOUND_PORT_NAME = 'wren-inbound';
export const MESH_PROXY_PORT_ANNOTATION = 'wren.io/proxy-port';
export const DEFAULT_INBOUND_PROXY_PORT = 15006;
export const TRAFFIC_POLICY_GROUP = 'policy.wren.io';
export const TRAFFIC_POLICY_VERSION = 'v1alpha1';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * A Service's or an EndpointSlice's port protocol (core/v1 Protocol). The mesh carries
 * TCP only: a UDP or SCTP port (kube-dns's 53/UDP beside its 53/TCP) is left out of the
 * mesh model, as Istio leaves UDP ports to kube-proxy; only the TCP port of a number
 * shared by two protocols becomes a mesh port.
 */
const portProto = literal(['TCP', 'UDP', 'SCTP'] as const, 'TCP');

/**
 * A Service's TCP port numbers are unique: the API server refuses two ports with the same
 * number and protocol, but a manifest in a directory has no API server, and the proxies'
 * parser refuses a Service with a port twice (contract/parse.ts). Refused here, alone and
 * with its field path, such a Service cannot make every proxy refuse the update carrying
 * it. (An EndpointSlice may list one target port under two names: its ports are not checked.)
 */
function uniqueTcpPorts(ports: readonly { readonly port: number; readonly protocol: string }[], specPath: string): void {
  const seen = new Map<number, number>();
  ports.forEach((p, i) => {
    if (p.protocol !== 'TCP') return;
    const first = seen.get(p.port);
    if (first !== undefined) fail(`${specPath}.ports[${i}].port`, `duplicate TCP port ${p.port} (also ports[${first}])`);
    seen.set(p.port, i);
  });
}

/** A uid, read only to tell incarnations apart: anything but a string (a hand-written manifest's) is none, never a refusal. */
const anyUid: Parser<string> = (raw) => (typeof raw === 'string' ? raw : '');

/** A timestamp as JSON (string) or as the client library's Date. */
const timestamp: Parser<string> = (raw) => (raw instanceof Date ? raw.toISOString() : typeof raw === 'string' ? raw : '');

const metadata = (nameRe: RegExp) =>
  obj(
    {
      name: str({ pattern: nameRe }),
      namespace: str({ pattern: DNS_LABEL, default: 'default' }),
      labels: withDefault(record(str()), {} as Readonly<Record<string, string>>),
      annotations: withDefault(record(str()), {} as Readonly<Record<string, string>>),
      creationTimestamp: timestamp,
      uid: anyUid,
    },
    { allowUnknown: true },
  );

/** A Map, not an object literal: a port named `constructor` must not find Object's constructor. */
const PROTOCOLS: ReadonlyMap<string, Protocol> = new Map(Object.entries({
  http: 'http1', 'kubernetes.io/http': 'http1', http2: 'http2', h2c: 'http2', 'kubernetes.io/h2c': 'http2',
  grpc: 'grpc', tcp: 'opaque', opaque: 'opaque', 'wren.io/opaque': 'opaque', tls: 'opaque', https: 'opaque', mongo: 'opaque', redis: 'opaque', mysql: 'opaque',
  // The Kubernetes standard appProtocols for WebSocket (KEP-3726): over cleartext it is
  // HTTP/1.1 (an Upgrade), over TLS the proxy sees TLS (Istio: HTTP and HTTPS).
  'kubernetes.io/ws': 'http1', 'kubernetes.io/wss': 'opaque',
} satisfies Record<string, Protocol>));

/**
 * A port's protocol as Istio selects it (pilot kube ConvertProtocol): appProtocol when it is
 * set, and then the port name is not read (a port named `http` with appProtocol
 * `kubernetes.io/wss` carries TLS, not HTTP); else the port name. Either is read whole
 * (`kubernetes.io/h2c`), else by its `<proto>[-suffix]` prefix (`http-web`, `grpc-api`); a
 * protocol neither names is `detect` (Istio sniffs it).
 */
export function portProtocol(name: string, appProtocol: string | undefined): Protocol {
  const from = (appProtocol || name).toLowerCase();
  return PROTOCOLS.get(from) ?? PROTOCOLS.get(from.split('-')[0]) ?? 'detect';
}

const anyStr = optional(str());

export const parseK8sService: Parser<KService> = (raw, path) => {
  const o = obj(
    {
      metadata: metadata(DNS_LABEL),
      spec: obj(
        {
          type: str({ default: 'ClusterIP' }),
          clusterIP: anyStr,
          clusterIPs: withDefault(arr(str()), [] as readonly string[]),
          ipFamilies: withDefault(arr(str()), [] as readonly string[]),
          ports: withDefault(
            arr(obj({ name: str({ default: '' }), port: num({ int: true, min: 1, max: 65535 }), protocol: portProto, appProtocol: anyStr }, { allowUnknown: true })),
            [],
          ),
        },
        { allowUnknown: true },
      ),
    },
    { allowUnknown: true },
  )(raw, path);
  uniqueTcpPorts(o.spec.ports, `${path ? path + '.' : ''}spec`);
  const ips = o.spec.clusterIPs.length > 0 ? o.spec.clusterIPs : o.spec.clusterIP ? [o.spec.clusterIP] : [];
  // "None" (headless) and anything else that is not an address are not cluster IPs.
  const clusterIPs = Object.freeze(ips.filter((ip) => isIP(ip) !== 0));
  const first = clusterIPs.length > 0 ? `IPv${isIP(clusterIPs[0])}` : o.spec.ipFamilies[0];
  const primaryFamily = first === 'IPv4' || first === 'IPv6' ? first : undefined;
  return Object.freeze({
    name: o.metadata.name,
    namespace: o.metadata.namespace,
    clusterIPs,
    ...(primaryFamily ? { primaryFamily } : {}),
    ports: Object.freeze(
      o.spec.ports.filter((p) => p.protocol === 'TCP').map((p) => Object.freeze({ name: p.name, port: p.port, protocol: portProtocol(p.name, p.appProtocol) })),
    ),
    externalName: o.spec.type === 'ExternalName',
  });
};

/** EndpointSlice conditions: nil ready/serving mean "ready" (API docs); nil terminating means false. */
const sliceEndpoint = obj(
  {
    // Checked against the slice's addressType below (the proxies refuse a bad address).
    addresses: arr(str(), { min: 1 }),
    conditions: obj({ ready: optional(bool()), serving: optional(bool()), terminating: optional(bool()) }, { allowUnknown: true }),
    zone: str({ default: '' }),
    targetRef: optional(obj({ kind: str({ default: '' }), name: str({ default: '' }), uid: anyUid }, { allowUnknown: true })),
  },
  { allowUnknown: true },
);

export const parseEndpointSlice: Parser<KEndpointSlice> = (raw, path) => {
  const o = obj(
    {
      metadata: metadata(DNS_SUBDOMAIN),
      addressType: literal(['IPv4', 'IPv6', 'FQDN'] as const),
      // A port without a number is valid ("ports are not restricted and must be interpreted
      // in the context of the specific consumer", EndpointPort.port): the mesh, which dials
      // a port, has none to dial, so that port is left out, not the whole slice refused.
      ports: withDefault(arr(obj({ name: str({ default: '' }), port: optional(num({ int: true, min: 1, max: 65535 })), protocol: portProto }, { allowUnknown: true })), []),
      endpoints: withDefault(arr(sliceEndpoint), []),
    },
    { allowUnknown: true },
  )(raw, path);
  // The API server validates each address against addressType (an IPv4 slice holds IPv4
  // addresses, without leading zeros); a manifest in a directory is not validated by one,
  // and one bad address would make every proxy refuse the update that carries it.
  const family = o.addressType === 'IPv4' ? 4 : o.addressType === 'IPv6' ? 6 : 0;
  if (family !== 0)
    o.endpoints.forEach((e, i) =>
      e.addresses.forEach((a, j) => {
        if (isIP(a) !== family) fail(`${path ? path + '.' : ''}endpoints[${i}].addresses[${j}]`, `expected an ${o.addressType} address, got ${JSON.stringify(a)}`);
      }),
    );
  return Object.freeze({
    name: o.metadata.name,
    namespace: o.metadata.namespace,
    service: o.metadata.labels['kubernetes.io/service-name'] ?? '',
    addressType: o.addressType,
    ports: Object.freeze(o.ports.flatMap((p) => (p.protocol === 'TCP' && p.port !== undefined ? [Object.freeze({ name: p.name, port: p.port })] : []))),
    endpoints: Object.freeze(
      o.endpoints.map((e) => {
        const ready = e.conditions.ready ?? true;
        return Object.freeze({
          addresses: e.addresses,
          ready,
          serving: e.conditions.serving ?? ready,
          terminating: e.conditions.terminating ?? false,
          zone: e.zone,
          pod: e.targetRef && e.targetRef.kind === 'Pod' && e.targetRef.name ? e.targetRef.name : null,
          podUid: e.targetRef?.uid ?? '',
        });
      }),
    ),
  });
};

/** The containers a pod's sidecar is recognised by: name, restartPolicy (native sidecar), ports. */
/**
 * A container's env as name -> value pairs, leniently: this is read for one variable of one
 * container, and a value the API server would have refused (a YAML number in a manifest on
 * disk) must not reject the whole pod, as it did not before env was read.
 */
const envVars: Parser<readonly { readonly name: string; readonly value?: string }[]> = (raw) =>
  Array.isArray(raw)
    ? raw.flatMap((e: unknown) => {
      const v = e as { name?: unknown; value?: unknown } | null;
      return typeof v?.name === 'string' ? [{ name: v.name, ...(typeof v.value === 'string' ? { value: v.value } : {}) }] : [];
    })
    : [];

const container = obj(
  {
    name: str({ default: '' }),
    restartPolicy: anyStr,
    ports: withDefault(arr(obj({ name: str({ default: '' }), containerPort: num({ int: true, min: 1, max: 65535 }) }, { allowUnknown: true })), []),
    // Only the injected proxy's WREN_OPAQUE_PORTS is read (podOpaquePorts()); a valueFrom has no value.
    env: envVars,
  },
  { allowUnknown: true },
);

/**
 * The ports a pod declares opaque itself: what its sidecar splices unsniffed besides the
 * ports its Services declare. The injected proxy's WREN_OPAQUE_PORTS when it has one (the
 * injector's reading of wren.io/opaque-ports when the pod was created: a container's
 * environment never changes, so this is what the running sidecar does); else the
 * annotation, parsed as the injector parses it (injector/annotations.ts parseOpaquePorts;
 * a malformed value declares nothing, as the injector then leaves the proxy's defaults), so
 * a pod without the sidecar, or one annotated after it started, still tells its callers
 * which of its ports speak first. The proxy's default list is not sent: every caller has it.
 */
function podOpaquePorts(annotation: string | undefined, sidecar: { readonly env: readonly { readonly name: string; readonly value?: string }[] } | undefined): readonly number[] {
  const env = sidecar?.env.find((e) => e.name === OPAQUE_PORTS_ENV)?.value;
  const raw = env ?? annotation;
  if (raw === undefined) return Object.freeze([]);
  const ports = parseOpaquePorts(raw);
  return Object.freeze(typeof ports === 'string' ? [] : ports);
}

/**
 * A pod is meshed when it HAS the sidecar, not when it asked for one: the proxy container
 * as the injector names it, either a classic container or a native sidecar (an init
 * container with restartPolicy Always). The opt-in label or annotation only asks the
 * injector, which can decline (namespace disabled, hostNetwork, kube-system) or never be
 * called (webhook down under the injector-fail-open component's failurePolicy Ignore, annotation-only opt-in the objectSelector
 * cannot see); a pod advertised as meshed without a proxy would be dialled on 15006 with
 * mTLS and be unreachable. Istio and Linkerd decide the same way, from the injected proxy
 * container. The same rule holds for manifests on disk (the directory source): a Pod
 * manifest declares its containers. The inbound port: the sidecar's `wren-inbound` container
 * port, else the annotation wren.io/proxy-port, else 15006.
 */
export const parsePod: Parser<KPod> = (raw, path) => {
  const o = obj(
    {
      metadata: metadata(DNS_SUBDOMAIN),
      spec: obj(
        {
          serviceAccountName: str({ pattern: DNS_SUBDOMAIN, default: 'default' }),
          containers: withDefault(arr(container), []),
          initContainers: withDefault(arr(container), []),
        },
        { allowUnknown: true },
      ),
    },
    { allowUnknown: true },
  )(raw, path);
  const owners = obj({ ownerReferences: withDefault(arr(ownerRef), []) }, { allowUnknown: true })((raw as { metadata?: unknown })?.metadata ?? {}, `${path ? path + '.' : ''}metadata`);
  const ann = o.metadata.annotations;
  const sidecar =
    o.spec.containers.find((c) => c.name === MESH_PROXY_CONTAINER) ??
    o.spec.initContainers.find((c) => c.name === MESH_PROXY_CONTAINER && c.restartPolicy === 'Always');
  const meshed = sidecar !== undefined;
  // The sidecar's declared port is where its proxy listens: the injector puts the annotation's
  // port there, or keeps 15006 when it refuses the value (a proxy port of its own: peers sent to
  // the annotation's 15000 would reach the admin port). The annotation serves a sidecar that
  // declares none (a hand-written manifest), as Linkerd reads its proxy container's port.
  const declared = sidecar?.ports.find((p) => p.name === MESH_INBOUND_PORT_NAME)?.containerPort;
  const portAnn = ann[MESH_PROXY_PORT_ANNOTATION];
  let proxyPort: number | null = null;
  if (portAnn !== undefined && (!meshed || declared === undefined)) {
    const n = Number(portAnn);
    if (!Number.isInteger(n) || n < 1 || n > 65535) fail(`${path ? path + '.' : ''}metadata.annotations["${MESH_PROXY_PORT_ANNOTATION}"]`, `expected a port number, got ${JSON.stringify(portAnn)}`);
    proxyPort = n;
  }
  return Object.freeze({
    name: o.metadata.name,
    namespace: o.metadata.namespace,
    serviceAccount: o.spec.serviceAccountName,
    uid: o.metadata.uid,
    meshed,
    proxyPort: meshed ? (declared ?? proxyPort ?? DEFAULT_INBOUND_PROXY_PORT) : null,
    labels: o.metadata.labels,
    workload: workloadOf(o.metadata.name, o.metadata.namespace, o.metadata.labels, owners.ownerReferences),
    opaquePorts: podOpaquePorts(ann[A.opaquePorts], sidecar),
  });
};

const ownerRef = obj({ kind: str({ default: '' }), name: str({ default: '' }), controller: optional(bool()) }, { allowUnknown: true });

/** Label values reach every peer's metrics: keep only what a Kubernetes label value may be (else ''). */
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

function workloadOf(name: string, namespace: string, labels: Readonly<Record<string, string>>, ownerReferences: PodMeta['ownerReferences']): Workload {
  const w = podWorkload({ name, labels, ownerReferences });
  const clean = (v: string) => (LABEL_VALUE.test(v) ? v : '');
  return Object.freeze({ name: DNS_SUBDOMAIN.test(w.name) ? w.name : name, namespace, app: clean(w.app), version: clean(w.version) });
}

export const parseTrafficPolicyResource: Parser<KTrafficPolicy> = (raw, path) => {
  const o = obj(
    {
      apiVersion: optional(literal([`${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`] as const)),
      metadata: metadata(DNS_SUBDOMAIN),
      spec: obj({
        targetRef: obj({ group: optional(str()), kind: literal(['Service', 'MeshService'] as const), name: str({ pattern: DNS_LABEL }) }),
        ports: withDefault(arr(num({ int: true, min: 1, max: 65535 })), [] as readonly number[]),
        policy: withDefault(parseTrafficPolicy, DEFAULT_POLICY),
      }),
    },
    { allowUnknown: true },
  )(raw, path);
  return Object.freeze({
    name: o.metadata.name,
    namespace: o.metadata.namespace,
    target: o.spec.targetRef.name,
    ports: o.spec.ports,
    policy: o.spec.policy,
    createdAt: o.metadata.creationTimestamp,
  });
};

/**
 * The compact hand-written form: `kind: MeshService`, metadata {name, namespace},
 * spec = parseService's fields (clusterIPs, ports[].endpoints, policy) plus an optional
 * spec.endpoints shorthand that applies to every port without its own endpoints (an
 * endpoint's port then defaults to that service port).
 */
export const parseMeshService: Parser<Service> = (raw, path) => {
  const p = (k: string) => (path ? `${path}.${k}` : k);
  const o = obj({ apiVersion: anyStr, kind: anyStr, metadata: metadata(DNS_LABEL), spec: (v: unknown) => v }, { allowUnknown: false })(raw, path);
  const spec = o.spec;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return fail(p('spec'), 'expected an object');
  const { endpoints: shared, ...rest } = spec as Record<string, unknown>;
  const sharedRaw = shared === undefined ? undefined : arr((v: unknown) => v)(shared, p('spec.endpoints'));
  if (sharedRaw) sharedRaw.forEach((e, i) => parseEndpoint({ port: 1, ...(e as object) }, p(`spec.endpoints[${i}]`)));
  const ports = Array.isArray(rest.ports)
    ? rest.ports.map((port: unknown) => {
        if (!sharedRaw || typeof port !== 'object' || port === null || 'endpoints' in port) return port;
        const sp = (port as { port?: unknown }).port;
        return { ...port, endpoints: sharedRaw.map((e) => ({ port: sp, ...(e as object) })) };
      })
    : rest.ports;
  return parseService({ ...rest, ports, name: o.metadata.name, namespace: o.metadata.namespace }, p('spec'));
};
