import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import { errorResponse } from '../errors/error-response.js';
import { header, isGrpc } from '../http/headers.js';
import { portPolicy, type FaultInjection, type FaultMatch } from '../../contract/model.js';
import { GRPC_STATUS_CODES } from '../../contract/parse-fault.js';
import type { Clock, Random } from '../../common/clock.js';
import type { Counter } from '../metrics/prom.js';
import type { CancelSignal } from '../../common/cancel.js';

export interface FaultDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** wren_faults_injected_total{kind="delay"|"abort"}. */
  readonly injected: Counter<'kind'>;
}

/**
 * Fault injection on the outbound side (Istio VirtualService `fault`, Envoy's HTTP fault
 * filter), from the routed service port's TrafficPolicy `fault`. It sits right below
 * routing and above admission, timeouts and retry, as Envoy's fault filter sits before
 * its router: a delayed request holds no circuit-breaker slot and its request timeout
 * starts after the delay, and an abort is answered once, never retried.
 *
 * Delay and abort are drawn independently (injected randomness); a request drawn for
 * both is delayed, then aborted (Envoy: the abort is checked when the delay ends). A delay
 * sets `faultDelayed` (response flag DI); an abort is the FAULT_ABORT error (flag FI)
 * with the configured status, through the one error table: an HTTP caller gets the
 * status, a gRPC caller a trailers-only response with its grpc-status.
 *
 * No fault configured: one property read per request.
 */
export const fault =
  (d: FaultDeps): HttpLayer =>
  (inner) =>
  (req) => {
    const route = req.route;
    const f = route ? portPolicy(route.service, route.port).fault : undefined;
    if (f === undefined || (f.match !== undefined && !matches(f.match, req))) return inner(req);
    const abort = f.abort !== undefined && d.random() * 100 < f.abort.percentage;
    const delay = f.delay !== undefined && d.random() * 100 < f.delay.percentage;
    if (delay) return delayed(d, f, abort, req, inner);
    if (abort) return aborted(d, f, req);
    return inner(req);
  };

function matches(m: FaultMatch, req: ProxyRequest): boolean {
  if (!req.path.startsWith(m.pathPrefix)) return false;
  for (const name in m.headers) if (header(req.headers, name) !== m.headers[name]) return false;
  return true;
}

async function delayed(d: FaultDeps, f: FaultInjection, abort: boolean, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  d.injected.inc({ kind: 'delay' });
  req.faultDelayed = true;
  await sleep(d.clock, f.delay!.fixedDelay, req.signal);
  return abort ? aborted(d, f, req) : inner(req);
}

/** Waits on the injected clock; a client that goes away meanwhile ends the wait (CLIENT_CANCELLED). */
function sleep(clock: Clock, ms: number, signal: CancelSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new ProxyError('CLIENT_CANCELLED'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      reject(new ProxyError('CLIENT_CANCELLED', 'during an injected delay'));
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function aborted(d: FaultDeps, f: FaultInjection, req: ProxyRequest): Promise<ProxyResponse> {
  d.injected.inc({ kind: 'abort' });
  // The request body is not wanted: let it flow away so the client's upload is not stuck.
  req.body?.resume();
  const a = f.abort!;
  const grpc = a.grpcStatus !== undefined ? GRPC_STATUS_CODES[a.grpcStatus]! : httpToGrpc(a.httpStatus!);
  const http = a.httpStatus ?? grpcToHttp(grpc);
  const status = isGrpc(req.headers) ? `grpc-status ${grpc}` : `status ${http}`;
  // Answered here (as authorize answers a denial), not thrown: an injected abort is the
  // configured behaviour, not a failure for errors-to-response to log at warn per request.
  return Promise.resolve(errorResponse(new ProxyError('FAULT_ABORT', status, { httpStatus: http, grpcStatus: grpc }), req));
}

/** gRPC's HTTP-to-gRPC mapping (grpc/doc/http-grpc-status-mapping.md), what a gRPC client makes of an HTTP status. */
function httpToGrpc(status: number): number {
  switch (status) {
    case 400: return 13; // INTERNAL
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7; // PERMISSION_DENIED
    case 404: return 12; // UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return 14; // UNAVAILABLE
    default: return 2; // UNKNOWN
  }
}

/** Envoy's Grpc::Utility::grpcToHttpStatus: the HTTP status an HTTP caller gets for a gRPC abort. */
const GRPC_TO_HTTP: readonly number[] = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];
const grpcToHttp = (code: number): number => GRPC_TO_HTTP[code] ?? 500;
