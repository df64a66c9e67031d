import { constants, type ServerHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { ServerResponse } from 'node:http';
import { isSettled, type ProxyResponse } from './exchange.js';

/**
 * Writes a ProxyResponse to the downstream client. Bodies are piped (backpressure both
 * ways); an upstream body that fails mid-way resets the downstream stream (HTTP/2) or
 * drops the connection (HTTP/1.1) so the client never mistakes a truncated body for a
 * complete one.
 */
export function writeH2Response(stream: ServerHttp2Stream, res: ProxyResponse): void {
  if (stream.destroyed || stream.closed) {
    res.body?.destroy();
    return;
  }
  const head: OutgoingHttpHeaders = { ...res.headers, ':status': res.status };
  if (res.body === null) {
    stream.respond(head, { endStream: true });
    return;
  }
  const body = res.body;
  if (isSettled(body)) {
    // The whole body is already here (a small response read in one go): the data and the
    // end go in one DATA frame with END_STREAM. Node only does that when end() follows the
    // last write in the same tick and no trailers are awaited, so they are asked for only
    // when there are some, and they are known now.
    const trailers = res.trailers();
    const withTrailers = trailers !== undefined && Object.keys(trailers).length > 0;
    stream.respond(head, { waitForTrailers: withTrailers });
    if (withTrailers) stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    const data = body.read() as Buffer | null; // everything buffered, and the end: 'end' follows
    if (data === null) stream.end();
    else stream.end(data);
    body.resume();
    return;
  }
  stream.respond(head, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers(res.trailers() ?? {}));
  body.on('error', () => {
    if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  });
  stream.on('close', () => body.destroy());
  body.pipe(stream);
}

export function writeH1Response(out: ServerResponse, res: ProxyResponse, isHead: boolean): void {
  if (out.destroyed) {
    res.body?.destroy();
    return;
  }
  // gRPC status in a trailers-only response has no HTTP/1 equivalent; keep it as headers.
  // writeHead only reads the object (no setHeader() was called), so no copy is needed.
  out.writeHead(res.status, res.headers);
  if (res.body === null || isHead) {
    res.body?.resume();
    out.end();
    return;
  }
  const body = res.body;
  body.on('error', () => out.destroy());
  out.on('close', () => body.destroy());
  body.on('end', () => {
    const t = res.trailers();
    if (t && out.chunkedEncoding) out.addTrailers(t);
    out.end();
  });
  body.pipe(out, { end: false });
}
