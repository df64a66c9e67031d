import { PROXY_ERROR_HEADER, toProxyError, type ProxyError } from './proxy-error.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { header, isGrpc, type Headers } from '../http/headers.js';
import { settledBody } from '../http/settled-body.js';

/**
 * The one place an error becomes what the client sees: a synthetic HTTP status with a
 * short text body, or for gRPC callers a trailers-only response (HTTP 200 with
 * grpc-status / grpc-message, per the gRPC over HTTP/2 spec), always carrying the
 * `wren-proxy-error` header with the stable error label.
 */
export function errorResponse(err: unknown, req: Pick<ProxyRequest, 'headers'>): ProxyResponse {
  const e = toProxyError(err, 'INTERNAL');
  const headers: Headers = { [PROXY_ERROR_HEADER]: e.label };
  if (isGrpc(req.headers)) {
    headers['content-type'] = grpcContentType(req.headers);
    headers['grpc-status'] = String(e.grpcStatus);
    headers['grpc-message'] = encodeGrpcMessage(e.message);
    return { status: 200, headers, body: null, trailers: () => undefined, proxyError: e.label };
  }
  const text = `${e.message}\n`;
  headers['content-type'] = 'text/plain; charset=utf-8';
  headers['content-length'] = String(Buffer.byteLength(text));
  return { status: e.httpStatus, headers, body: settledBody(Buffer.from(text)), trailers: () => undefined, proxyError: e.label };
}

/** A gRPC-Web media type (PROTOCOL-WEB.md): `application/grpc-web` or `-web-text`, with an optional `+format`. */
const GRPC_WEB = /^application\/grpc-web(?:-text)?(?:\+[a-z0-9._-]+)?$/;

/**
 * The content type of a synthetic gRPC answer: the request's own when it is gRPC-Web, else
 * `application/grpc`. A gRPC-Web client (grpc-web, Envoy's grpc_web filter in front of it)
 * reads a response as gRPC-Web only under a gRPC-Web content type, and one in text mode
 * expects `-web-text` back; `application/grpc` made them fail the call as a malformed
 * response instead of reporting the error's status. The answer needs no encoding: it is
 * Trailers-Only, its status in the headers and no body (PROTOCOL-WEB.md "Trailers-only
 * responses: no change to the gRPC protocol spec"), so there is nothing to frame or base64.
 * Parameters are dropped (no gRPC media type defines one).
 */
function grpcContentType(h: Headers): string {
  const media = (header(h, 'content-type') ?? '').split(';', 1)[0].trim().toLowerCase();
  return GRPC_WEB.test(media) ? media : 'application/grpc';
}

/**
 * The trailers that end a gRPC response whose headers already went out with `e`'s status
 * (a body cut mid-way, a deadline after the headers): grpc-status, the percent-encoded
 * grpc-message and the `wren-proxy-error` label, as Linkerd's "gRPC rescue" ends such a
 * stream with a TRAILERS frame (grpc-status, grpc-message, l5d-proxy-error).
 */
export function grpcErrorTrailers(e: ProxyError): Headers {
  return { 'grpc-status': String(e.grpcStatus), 'grpc-message': encodeGrpcMessage(e.message), [PROXY_ERROR_HEADER]: e.label };
}

/**
 * A gRPC call a sidecar ended with a Trailers-Only error (errorResponse above: this proxy's,
 * or the peer sidecar's relayed, both labelled `wren-proxy-error`): no upstream reads the
 * rest of its request. The servers then send RST_STREAM NO_ERROR after it when the client
 * is still sending, as they do after a rescue's trailers (grpcErrorTrailers) and as a gRPC
 * server ends a call before the client's END_STREAM (RFC 9113 section 8.1: "stop sending").
 */
export function endsGrpcCall(res: Pick<ProxyResponse, 'headers' | 'body'>): boolean {
  return res.body === null && res.headers[PROXY_ERROR_HEADER] !== undefined && isGrpc(res.headers);
}

/**
 * grpc-message is percent-encoded (gRPC PROTOCOL-HTTP2.md, "Responses"): every byte of the
 * message's UTF-8 outside %x20-%x24 / %x26-%x7E as `%XX`. Matched by code point (the `u`
 * flag): without it a character outside the BMP (an emoji in a detail) was matched as its
 * two UTF-16 halves, each a lone surrogate that UTF-8 encodes as U+FFFD (%EF%BF%BD), so the
 * client decoded two replacement characters instead of the character.
 */
function encodeGrpcMessage(s: string): string {
  return s.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) =>
    Array.from(Buffer.from(c)).map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''),
  );
}

/**
 * The answer to a tunnel request (an HTTP/2 CONNECT stream from a peer sidecar) that is
 * refused: the table's status and `wren-proxy-error` label like any error response, but
 * no body. RFC 9110 section 9.3.6: any non-2xx answer means no tunnel was formed, and the
 * peer relays a CONNECT stream's bytes to its client as they come, so a text body would
 * reach that client as if the app had sent it. `extra`: headers that qualify the error
 * (the authorization decision's reason).
 */
export function tunnelRefusal(err: unknown, extra?: Headers): ProxyResponse {
  const e = toProxyError(err, 'INTERNAL');
  return { status: e.httpStatus, headers: { ...extra, [PROXY_ERROR_HEADER]: e.label }, body: null, trailers: () => undefined, proxyError: e.label };
}
