import type { Endpoint } from '../../contract/model.js';
import { PROXY_ERROR_HEADER } from '../errors/proxy-error.js';
import { header, type Headers } from '../http/headers.js';
import type { Outcome, Retryability } from './classify.js';

/** A peer sidecar could not connect to its app: the app never saw the request. */
const PEER_CONNECT: Retryability = Object.freeze({ alwaysSafe: true, on: Object.freeze(['connect-failure', '5xx', 'gateway-error', 'retriable-status-codes'] as const) });
/** The app reset its connection to the peer sidecar: it may have read the request. */
const PEER_RESET: Retryability = Object.freeze({ alwaysSafe: false, on: Object.freeze(['reset', '5xx', 'gateway-error', 'retriable-status-codes'] as const) });

/**
 * The outcome of a response from `endpoint`, given its headers: a meshed endpoint's
 * sidecar that could not reach its app answers with its own proxy error
 * (its PROXY_ERROR_HEADER, errors/error-response.ts: 502 `connect-refused`, 504
 * `connect-timeout`, 502 `upstream-reset`; for a gRPC caller grpc-status 14), and that is
 * the endpoint's connection-level failure, not an answer of its app. So it is classified
 * as the peer's own failure would be: a connect failure is local-origin and always safe to
 * retry (the app never saw the request: the peer's app port is closed while the app
 * starts or restarts), a reset is a local-origin reset (`reset`, `idempotent-reset`).
 * Retries, breakers, outlier ejection (Envoy counts these as local-origin failures) and
 * the connect-failure count of the health report then treat it alike. Istio gets there
 * another way: the server's Envoy answers 503 UF and the client's default retry policy
 * retries connect-failure and 503 (retriable-status-codes).
 *
 * Only a meshed endpoint (`proxyPort` set: its sidecar proved its identity over mTLS) is
 * read this way: an unmeshed app could write the header itself. A peer's app cannot: the
 * inbound drops the mesh fields and that header from what the app answers
 * (inbound/deliver-to-app.ts). The header is read only for a response that is already a
 * failure, so a success costs nothing here. The status stays the response's, so
 * `retriable-status-codes` still matches it (Envoy's client sees the peer's 503 too).
 */
export function fromPeerSidecar(outcome: Outcome, headers: Headers, endpoint: Endpoint | undefined): Outcome {
  if (outcome.kind !== 'failure' || endpoint === undefined || endpoint.proxyPort === null) return outcome;
  const label = header(headers, PROXY_ERROR_HEADER);
  let retryable: Retryability;
  switch (label) {
    case 'connect-refused':
    case 'connect-timeout':
    case 'connect-failed':
      retryable = PEER_CONNECT;
      break;
    case 'upstream-reset':
      retryable = PEER_RESET;
      break;
    default:
      return outcome;
  }
  return { kind: 'failure', origin: 'local', reason: label, gateway: true, status: outcome.status, grpcStatus: outcome.grpcStatus, retryable };
}
