/**
 * Peer metadata between sidecars (Istio's x-envoy-peer-metadata idea, a few bytes instead
 * of a protobuf Struct): the outbound sidecar tells the inbound one which workload is
 * calling and which service it meant, so the inbound side's metrics carry source_workload,
 * source_app... and the real destination_service. Istio exchanges the same facts (the
 * workload name, namespace, app and version labels) for the same metrics.
 *
 *   wren-peer: <workload>;<namespace>;<app>;<version>;<service name>.<service namespace>
 *
 * Any field may be empty (unknown). The inbound side trusts it only from an mTLS peer,
 * and only when the namespace is the one in the peer's verified SPIFFE ID; every field
 * is checked against the charset and length of the Kubernetes name or label value it is
 * (they become metric label values), and the header is removed before the app sees it.
 * The outbound side strips any `wren-peer` an app sent (strip-mesh-headers.ts).
 */
export interface PeerMetadata {
  readonly workload: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  /** The service the caller routed to: name and namespace ('' = not said). */
  readonly serviceName: string;
  readonly serviceNamespace: string;
}

/** Well above 253 + 63 * 4 + separators: a longer value is not ours. */
export const MAX_PEER_HEADER_LENGTH = 600;

const NAME = /^$|^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const DNS_LABEL = /^$|^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_VALUE = /^$|^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const SERVICE = /^$|^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function encodePeerMetadata(w: { name: string; namespace: string; app: string; version: string }, service: { name: string; namespace: string } | undefined): string {
  return `${w.name};${w.namespace};${w.app};${w.version};${service ? `${service.name}.${service.namespace}` : ''}`;
}

/**
 * The header's value checked field by field; null when it is malformed (then nothing of
 * it is used: one bad field makes the whole claim doubtful).
 */
export function parsePeerMetadata(value: string): PeerMetadata | null {
  if (value.length > MAX_PEER_HEADER_LENGTH) return null;
  const f = value.split(';');
  if (f.length !== 5) return null;
  const [workload, namespace, app, version, service] = f;
  if (!NAME.test(workload) || !DNS_LABEL.test(namespace) || !LABEL_VALUE.test(app) || !LABEL_VALUE.test(version) || !SERVICE.test(service)) return null;
  const dot = service.indexOf('.');
  return { workload, namespace, app, version, serviceName: dot < 0 ? '' : service.slice(0, dot), serviceNamespace: dot < 0 ? '' : service.slice(dot + 1) };
}
