import type { ExternalDestination } from '../egress/egress-policy.js';
import type { Readable } from 'node:stream';
import type { LeanBody } from './lean-body.js';
import type { Headers } from './headers.js';
import type { Endpoint, Service, ServicePort } from '../../contract/model.js';
import type { RequestAuth } from '../policy/authorizer.js';
import type { CancelSignal } from '../../common/cancel.js';

/**
 * A body as the data path reads it: node's Readable in byte mode, or a LeanBody (lean-body.ts),
 * which the codecs make: the same events and methods, without Readable's ticks. A reader uses
 * only what both have.
 */
export type BodyStream = Readable | LeanBody;

/**
 * One HTTP request as it flows through a listener's layers, whatever protocol it
 * arrived in. Bodies are streams (never buffered whole); trailers are read once the
 * body has ended.
 */
export interface ProxyRequest {
  readonly method: string;
  readonly scheme: string;
  authority: string;
  /** Rewritten only by the inbound's path normalization (layers/normalize-path.ts). */
  path: string;
  readonly headers: Headers;
  /** null when the request has no body (END_STREAM on HEADERS / no content-length). */
  readonly body: BodyStream | null;
  readonly trailers: () => Headers | undefined;
  /**
   * The protocol the client spoke to us. 'TCP': an opaque TCP connection carried through
   * the outbound layers as a CONNECT-like request (method CONNECT, no body, no headers);
   * its response (200) has the upstream byte stream as body (outbound/tcp-request.ts).
   */
  readonly origProto: 'HTTP/1.1' | 'HTTP/2' | 'TCP';
  readonly source: { readonly address: string; readonly port: number; readonly identity: string };
  /**
   * Where the app meant to connect, for redirected connections (SO_ORIGINAL_DST); on an
   * upstream listener, the service it is bound to (`upstream`, `name.namespace:port`).
   */
  readonly origDst?: { readonly address: string; readonly port: number; readonly upstream?: string; readonly egress?: boolean };
  /** Aborted when the downstream client goes away (cancellation travels upstream). */
  readonly signal: CancelSignal;
  readonly startedAt: number;
  /** Filled in by routing layers. */
  route?: { readonly service: Service; readonly port: ServicePort; readonly endpoint?: Endpoint };
  endpoint?: Endpoint;
  /** The HTTPRoute / GRPCRoute rule that routed it (`namespace.route.rule`): the access log's route_name (routing/port-routing.ts). */
  routeName?: string;
  /** The path before a URLRewrite filter rewrote `path` (the access log shows it, as Envoy's X-ENVOY-ORIGINAL-PATH). */
  originalPath?: string;
  /** Local delivery port (inbound). */
  targetPort?: number;
  /** Inbound: what the request's verified JWT says (request-authn layer); absent: no token. */
  requestAuth?: RequestAuth;
  /** Inbound: the query parameters the workload's RequestAuthentication reads tokens from (redacted in logs); absent: none. */
  tokenParams?: ReadonlySet<string>;
  /**
   * An HTTP/1.1 upgrade request (RFC 9110 section 7.8): the protocols the client asked
   * for (its `Upgrade` header, e.g. `websocket`). The request itself has no body; what the
   * client sends after the head is held by the listener until the upstream answers 101.
   */
  readonly upgrade?: string;
  /**
   * Outbound, out of the mesh (`origDst.egress`): the ExternalService host the request
   * matched (egress-http.ts), which its metrics labels and access log line name, as Istio
   * names ServiceEntry traffic; absent: undeclared (PassthroughCluster, or BlackHoleCluster
   * when refused).
   */
  external?: ExternalDestination;
  /** Outbound: the fault layer held the request back (TrafficPolicy fault delay): response flag DI. */
  faultDelayed?: boolean;
}

export interface ProxyResponse {
  /**
   * 101 only in answer to an upgrade request: then `headers.upgrade` names the protocol
   * switched to and `body` is the tunnel, a Duplex (its readable side the upstream's bytes,
   * its writable side going to the upstream). Layers see it end like any body.
   */
  readonly status: number;
  readonly headers: Headers;
  readonly body: BodyStream | null;
  readonly trailers: () => Headers | undefined;
  /** Set when the response was synthesized by the proxy for an error. */
  readonly proxyError?: string;
  /**
   * The client's connection ends after this response (a refusal that holds for every later
   * request on it): HTTP/1.1 says `connection: close` and closes; HTTP/2 sends GOAWAY, so
   * streams in flight finish and no new one is taken. Only the listeners' servers read it.
   */
  readonly closeConnection?: boolean;
  /**
   * When the request had to wait for its connection (a new one being opened, or the pool
   * full), the clock time that connection was up or free for it; -1 or absent when it went
   * out on a connection at once. The
   * latency pick-endpoint gives the balancer starts there: tower's PeakEwma (Linkerd's
   * balancer) times a request from its call on an endpoint that is ready, its connection
   * already established, so a new endpoint's first request is not charged the TLS
   * handshake (under load, hundreds of ms, enough to keep it out of P2C for tens of seconds).
   */
  readonly sentAt?: number;
}

export type HttpService = (req: ProxyRequest) => Promise<ProxyResponse>;
/** A layer wraps the next service; it knows nothing of its neighbours. */
export type HttpLayer = (inner: HttpService) => HttpService;

/** Compose layers top to bottom: stack([a, b, c], terminal) = a(b(c(terminal))). */
export function stack(layers: readonly HttpLayer[], terminal: HttpService): HttpService {
  return layers.reduceRight<HttpService>((svc, layer) => layer(svc), terminal);
}

/**
 * A body stream whose producer can tell that every byte of it has already arrived: it is
 * all buffered in the stream and its end has been pushed. A writer can then send the
 * data and the end together (one HTTP/2 DATA frame with END_STREAM instead of a second
 * frame, so one socket write and one wake-up of the peer fewer per response).
 */
export interface SettledBody {
  readonly settled: boolean;
}

/**
 * Whether a writer may send `body` whole now: it is settled, or it has ended already. A
 * body that has emitted its 'end' (node's Http2Stream ends an empty request body, HEADERS
 * then an empty DATA with END_STREAM, before anyone reads it) has nothing more to give and
 * no 'end' to come: a writer that waited for one would never finish the message.
 */
export function isSettled(body: BodyStream): boolean {
  if (body.readableEnded) return true;
  return (body as BodyStream & Partial<SettledBody>).settled === true && !body.destroyed;
}
