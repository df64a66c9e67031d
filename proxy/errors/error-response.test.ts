import { errorResponse, grpcErrorTrailers } from './error-response.js';
import { ProxyError } from './proxy-error.js';

/**
 * grpc-message is the percent-encoded UTF-8 of the message (gRPC PROTOCOL-HTTP2.md,
 * "Responses": Percent-Byte-Unencoded is %x20-%x24 / %x26-%x7E, every other byte `%XX`).
 * Found by the gRPC adversary review (adv65): a character outside the BMP was encoded as
 * two U+FFFD (%EF%BF%BD%EF%BF%BD), so what a gRPC client decoded was not the message.
 */
const GRPC = { 'content-type': 'application/grpc' };

test.each([
  ['ASCII, with the percent sign itself encoded', 'a 100% b', 'a 100%25 b'],
  ['a two-byte character', 'café', 'caf%C3%A9'],
  ['a character outside the BMP (a surrogate pair in JavaScript)', 'ok \u{1F600}!', 'ok %F0%9F%98%80!'],
  ['control characters', 'a\tb\nc', 'a%09b%0Ac'],
])('%s: trailers-only and rescue trailers carry the spec encoding, which decodes back to the message', (_what, detail, encoded) => {
  const e = new ProxyError('BAD_REQUEST', detail);
  const head = errorResponse(e, { headers: GRPC }).headers;
  expect(head['grpc-message']).toBe(`malformed request: ${encoded}`);
  expect(grpcErrorTrailers(e)['grpc-message']).toBe(`malformed request: ${encoded}`);
  // What a gRPC client does with it (grpc-js: decodeURI of the value).
  expect(decodeURIComponent(String(head['grpc-message']))).toBe(e.message);
});
