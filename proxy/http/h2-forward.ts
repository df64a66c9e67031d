import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { appendFields, cleanHeaders, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { H2Call, startH2Call } from './h2-call.js';

export { wasRefused } from './h2-call.js';

/**
 * Sends a request as one HTTP/2 stream on an existing session and resolves with the
 * response head; the body streams with backpressure, trailers follow it. Cancellation
 * (req.signal) resets the upstream stream with CANCEL. A stream refused before any
 * response (REFUSED_STREAM, GOAWAY) is reported as `refused` (wasRefused) so callers may
 * retry it. `extra` headers (the mesh headers) are added to `head` in the one copy made
 * here, node's flat field list (headers.ts appendFields), which request() encodes without
 * copying it again. The stream's lifecycle is h2-call.ts's, shared with upgrades.
 */
export function forwardH2(session: ClientHttp2Session, req: ProxyRequest, head: Headers, extra?: Headers): Promise<ProxyResponse> {
  const out = [':method', req.method, ':scheme', req.scheme, ':authority', req.authority, ':path', req.path];
  appendFields(out, head, extra);
  if (extra !== undefined) appendFields(out, extra, undefined);
  return startH2Call(new H2Call(session, req, onForwardResponse, true), out, req.body !== null, false);
}

function onForwardResponse(call: H2Call, h: IncomingHttpHeaders, endStream: boolean): void {
  call.respond(Number(h[':status']), cleanHeaders(h), endStream);
}
