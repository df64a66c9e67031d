/**
 * The OpenTelemetry semantic-convention attribute names the trace layer writes (stable
 * conventions: https://opentelemetry.io/docs/specs/semconv/registry/attributes/), and
 * SpanStatusCode.ERROR's value (OpenTelemetry API, Span Status: UNSET 0, OK 1, ERROR 2).
 * Written out instead of imported: `@opentelemetry/semantic-conventions`' index loads
 * every attribute the conventions ever had (thousands of constants, ~1 MB of source) and
 * `@opentelemetry/api` its globals, in every sidecar, recording or not (docs/benchmarks.md,
 * "Resident memory"). semconv.test.ts checks each value against the packages.
 */
export const ATTR_CLIENT_ADDRESS = 'client.address';
export const ATTR_ERROR_TYPE = 'error.type';
export const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
export const ATTR_NETWORK_PROTOCOL_VERSION = 'network.protocol.version';
export const ATTR_RPC_METHOD = 'rpc.method';
export const ATTR_SERVER_ADDRESS = 'server.address';
export const ATTR_SERVER_PORT = 'server.port';
export const ATTR_URL_FULL = 'url.full';
export const ATTR_URL_PATH = 'url.path';
export const ATTR_URL_SCHEME = 'url.scheme';

/** SpanStatusCode.ERROR. */
export const SPAN_STATUS_ERROR = 2;
