import type { Agent } from 'node:http';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { MESH, type Headers } from '../http/headers.js';
import { forwardH2 } from '../http/h2-forward.js';
import { forwardH1 } from '../http/h1-forward.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { PeerPool } from './peer-pool.js';
import type { Endpoint } from '../../contract/model.js';
import { upgradeH1 } from '../http/h1-upgrade.js';
import { upgradeH2 } from '../http/h2-upgrade.js';
import { stateOf } from '../layers/request-state.js';
import { portPolicy } from '../../contract/model.js';
import { H1Pool } from '../http/h1-pool.js';
import type { WorkloadLabels } from '../metrics/workload-labels.js';

/**
 * Terminal outbound service. To a meshed endpoint every request becomes an HTTP/2
 * stream on the mTLS session to the peer sidecar: HTTP/1.1 is upgraded and the
 * original protocol travels in `wren-orig-proto` so the peer downgrades it again
 * (Linkerd's l5d-orig-proto); the app port travels in `wren-target-port`.
 * Unmeshed endpoints get the request as the client sent it, in plaintext.
 * HTTP/1.1 upgrades are extended CONNECT streams to a peer sidecar (h2-upgrade.ts) and
 * HTTP/1.1 upgrade requests on a connection of their own to an unmeshed endpoint.
 * The HTTP/1.1 keep-alive connections to an unmeshed endpoint take the cluster's
 * connection slots (Envoy max_connections bounds an HTTP/1.1 pool); a request that finds
 * them all busy waits as a pending request, at most the connect timeout.
 *
 * With `meshH1` (config protocol.meshHttp1 'h1'), HTTP/1.1 to a peer sidecar stays
 * HTTP/1.1 instead, on that pool's mTLS connections to the peer (mesh-h1-pool.ts), which
 * take the cluster's connection slots as an unmeshed endpoint's do; the mesh headers are
 * two field lines of the head. Upgrades keep extended CONNECT on the HTTP/2 session.
 */
export function forwardToEndpoint(peers: PeerPool, agent: Agent, mesh: MeshPools, local?: WorkloadLabels): HttpService {
  const via = meshPoolsOf(mesh);
  const lines = new MeshFieldLines();
  return (req) => {
    const ep = req.endpoint;
    if (!ep) return Promise.reject(new ProxyError('NO_ENDPOINTS'));
    // Peer metadata for the peer sidecar's metrics (metrics/peer-metadata.ts): to meshed endpoints only.
    const peer = local && ep.proxyPort !== null ? local.peerHeader(req.route?.service) : undefined;
    if (req.upgrade !== undefined) return upgrade(peers, agent, ep, req, peer);
    if (viaH1Pool(req, ep, via)) {
      const route = req.route;
      const st = stateOf(req);
      const limits = st?.cluster;
      const waitMs = route && limits ? portPolicy(route.service, route.port).timeouts.connectMs : undefined;
      // An attempt with per-try timers: the pool says when it waits for a connection (request-state.ts TryTimer).
      const wait = st !== undefined && st.timesTry ? st : undefined;
      if (ep.proxyPort !== null) {
        const proto = upstreamProto(req);
        const extra = lines.of(ep.port, proto, peer);
        // HTTP/2 (meshHttp2 mux): a virtual connection stands for a stream of the peer's
        // HTTP/2 session, not for a connection. The call holds a request slot (admission)
        // as a stream does; no connection slot, and beyond the pool's bound per peer it
        // waits for a stream as on a full session, not as a pending request timed by the
        // connect timeout (Envoy: max_connections counts an HTTP/2 upstream's connections,
        // max_requests its streams). While the multiplexer session it needs is being
        // established it is a pending request, as one waiting for a peer session on h2
        // (the pool's sessionStreams: mesh-mux-pool.ts).
        if (proto === 'HTTP/2') return mesh.h2!.request(ep.address, ep.proxyPort, req, req.headers, limits, waitMs, ep.identity, extra, wait);
        return mesh.h1!.request(ep.address, ep.proxyPort, req, req.headers, limits, waitMs, ep.identity, extra, wait);
      }
      if (!route || !limits) return forwardH1(agent, ep.address, ep.port, req, req.headers);
      return forwardH1(agent, ep.address, ep.port, req, req.headers, limits, waitMs, wait);
    }
    const origProto = upstreamProto(req);
    const extra: Headers | undefined =
      ep.proxyPort === null
        ? undefined
        : peer === undefined
          ? { [MESH.targetPort]: String(ep.port), [MESH.origProto]: origProto }
          : { [MESH.targetPort]: String(ep.port), [MESH.origProto]: origProto, [MESH.peer]: peer };
    // pick-endpoint connected the attempt (its connector's upstream): no look-up, no promise round trip.
    const up = stateOf(req)?.upstream;
    if (up?.kind === 'h2') return forwardH2(up.session, req, req.headers, extra);
    const session = peers.ready(ep);
    if (session) return forwardH2(session, req, req.headers, extra);
    return peers.get(ep).then((s) => forwardH2(s, req, req.headers, extra));
  };
}

/**
 * The mesh field lines of a request to a peer sidecar (target port, original protocol,
 * peer metadata), kept while they repeat: a connection's requests go to the same few
 * endpoints, and a new concatenation per request was flattened again when the head was
 * written (a call into V8's runtime per request, docs/benchmarks.md "Issue 12, 2026-12-05
 * tenth session").
 */
class MeshFieldLines {
  private port = -1;
  private proto = '';
  private peer: string | undefined = undefined;
  private text = '';

  of(port: number, proto: string, peer: string | undefined): string {
    if (port !== this.port || proto !== this.proto || peer !== this.peer) {
      this.port = port;
      this.proto = proto;
      this.peer = peer;
      this.text = `${MESH.targetPort}: ${port}\r\n${MESH.origProto}: ${proto}\r\n${peer === undefined ? '' : `${MESH.peer}: ${peer}\r\n`}`;
    }
    return this.text;
  }
}

function upgrade(peers: PeerPool, agent: Agent, ep: Endpoint, req: ProxyRequest, peer: string | undefined): Promise<ProxyResponse> {
  // Its limits counted as the outbound's HTTP/1.1 pool to unmeshed endpoints counts them (an endpoint's 1xx flood).
  if (ep.proxyPort === null) {
    const route = req.route;
    // The cluster's connect timeout, as a pooled request to the endpoint has (the pool's pending wait, connectMs).
    const connectTimeoutMs = route ? portPolicy(route.service, route.port).timeouts.connectMs : undefined;
    return upgradeH1(ep.address, ep.port, req, req.headers, { connectTimeoutMs, onLimit: H1Pool.of(agent).onLimit });
  }
  const extra: Headers = peer === undefined ? { [MESH.targetPort]: String(ep.port) } : { [MESH.targetPort]: String(ep.port), [MESH.peer]: peer };
  const up = stateOf(req)?.upstream;
  if (up?.kind === 'h2') return upgradeH2(up.session, req, req.headers, extra);
  const session = peers.ready(ep);
  if (session) return upgradeH2(session, req, req.headers, extra);
  return peers.get(ep).then((s) => upgradeH2(s, req, req.headers, extra));
}

/**
 * Whether forwardToEndpoint settles as soon as the request's signal aborts, so the attempt
 * need not race it (pick-endpoint): a request that is not an upgrade goes on an HTTP/1.1
 * pool (its exchange rejects on abort: h1-pool-exchange.ts) or as an HTTP/2 call on the session
 * pick-endpoint connected (the call resets its stream and rejects: h2-call.ts). An upgrade
 * to an unmeshed endpoint, and a session still being opened, are raced.
 */
export function forwardWatchesSignal(mesh: MeshPools): (req: ProxyRequest, ep: Endpoint) => boolean {
  const via = meshPoolsOf(mesh);
  return (req, ep) => req.upgrade === undefined && req.origProto !== 'TCP' && (upstreamProto(req) === 'HTTP/1.1' || stateOf(req)?.upstream?.kind === 'h2' || viaH1Pool(req, ep, via));
}

/**
 * The protocol the app gets a request in: the client's, except that an HTTP/2 request to a
 * service port declared `http1` is sent as HTTP/1.1 (an app behind such a port speaks only
 * HTTP/1.1; Istio's sidecars also speak the declared protocol to the app, where h2c would
 * get a 502 from an HTTP/1.1 server). A port left to detection keeps the client's protocol,
 * as Linkerd does.
 */
function upstreamProto(req: ProxyRequest): ProxyRequest['origProto'] {
  return req.origProto === 'HTTP/2' && req.route?.port.protocol === 'http1' ? 'HTTP/1.1' : req.origProto;
}

/**
 * Whether forwardToEndpoint sends the request on an HTTP/1.1 pool, which connects (and
 * takes the cluster's connection slots) by itself: HTTP/1.1 that is not an upgrade, to an
 * unmeshed endpoint, or to a peer sidecar with `meshH1`. The outbound connector opens
 * nothing for those (outbound-connector.ts).
 */
export function viaH1Pool(req: ProxyRequest, ep: Endpoint, via: MeshVia): boolean {
  if (req.upgrade !== undefined) return false;
  const proto = upstreamProto(req);
  if (proto === 'HTTP/1.1') return ep.proxyPort === null || via.h1;
  return proto === 'HTTP/2' && via.h2 && ep.proxyPort !== null;
}

/**
 * The HTTP/1.1 pools to peer sidecars: `h1` for HTTP/1.1 (protocol.meshHttp1 h1 or mux),
 * `h2` for HTTP/2 and gRPC (protocol.meshHttp2 mux). Absent: those requests take a stream
 * on the peer's HTTP/2 session.
 */
export interface MeshPools {
  readonly h1?: H1Pool;
  readonly h2?: H1Pool;
}

/** Which protocols a peer sidecar gets on an HTTP/1.1 pool (what the connector and pick-endpoint need to know of MeshPools). */
export interface MeshVia {
  readonly h1: boolean;
  readonly h2: boolean;
}

export function meshPoolsOf(mesh: MeshPools): MeshVia {
  return { h1: mesh.h1 !== undefined, h2: mesh.h2 !== undefined };
}
