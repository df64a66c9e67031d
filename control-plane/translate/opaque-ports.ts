import type { KEndpointSlice, KService } from './k8s-objects.js';

/**
 * The target ports of one pod that its Services declare opaque: what the control plane
 * pushes with the pod's inbound policy (InboundPolicyResource.opaque_ports), so the pod's
 * sidecar splices a server-first protocol (MySQL, SMTP, any greeting) at once instead of
 * sniffing it for HTTP until protocol.detectTimeoutMs. The inbound cannot take the peer's
 * word for it (a peer claiming "opaque" would get raw HTTP with a forged XFCC to the app),
 * so it takes the control plane's, as Istio's inbound listener takes each port's protocol
 * from the Services that select the pod and Linkerd's from the pod's opaque-ports policy.
 *
 * A Service port's target port for this pod is the port of the same name in the
 * EndpointSlices that list the pod: the EndpointSlice controller resolves a named
 * targetPort per pod (its container port of that name), so a slice holds the pods that
 * resolved it alike. A Service port declares opaque as the outbound reads it
 * (k8s-objects.ts portProtocol: appProtocol tcp/opaque/mysql..., or a `tcp-` name).
 *
 * Two Services (or two ports of one) that target the same pod port with different
 * protocols: the port is sniffed unless every one of them declares it opaque. Istio picks
 * the oldest Service; here the safe side wins, since a port wrongly spliced hands raw
 * bytes (and a forged XFCC in them) to an HTTP app, while one wrongly sniffed only waits
 * for the detection timeout. A port no Service declares (or declares `detect`) is not
 * pushed: the sidecar's static protocol.opaquePorts still applies to it.
 */
export function opaqueTargetPorts(pod: string, declared: Iterable<readonly [KService | undefined, KEndpointSlice]>): readonly number[] {
  const opaque = new Set<number>();
  const other = new Set<number>();
  for (const [svc, slice] of declared) {
    if (!svc || svc.externalName || slice.addressType === 'FQDN' || !slice.endpoints.some((e) => e.pod === pod)) continue;
    for (const sp of slice.ports) {
      const declaredPort = svc.ports.find((p) => p.name === sp.name);
      if (!declaredPort) continue;
      (declaredPort.protocol === 'opaque' ? opaque : other).add(sp.port);
    }
  }
  return Object.freeze([...opaque].filter((p) => !other.has(p)).sort((a, b) => a - b));
}

/**
 * opaqueTargetPorts() of every pod the slices name ("namespace/name" -> ports; pods with
 * none left out), for a source that holds the whole cluster at once (the directory source).
 */
export function opaquePortsByPod(services: readonly KService[], slices: readonly KEndpointSlice[]): Map<string, readonly number[]> {
  const svcs = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s] as const));
  const byPod = new Map<string, (readonly [KService | undefined, KEndpointSlice])[]>();
  for (const slice of slices) {
    if (!slice.service) continue;
    const svc = svcs.get(`${slice.namespace}/${slice.service}`);
    if (!svc) continue;
    for (const e of slice.endpoints) {
      if (!e.pod) continue;
      const key = `${slice.namespace}/${e.pod}`;
      let l = byPod.get(key);
      if (!l) byPod.set(key, (l = []));
      if (!l.some(([, s]) => s === slice)) l.push([svc, slice]);
    }
  }
  const out = new Map<string, readonly number[]>();
  for (const [key, l] of byPod) {
    const ports = opaqueTargetPorts(key.slice(key.indexOf('/') + 1), l);
    if (ports.length > 0) out.set(key, ports);
  }
  return out;
}
