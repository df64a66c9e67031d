import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { cleanHeaders, cleanTrailers, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { releaseOnClose } from './release-on-close.js';
import { chargeReset } from './session-resets.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = constants;

/**
 * Sends a request as one HTTP/2 stream on an existing session and resolves with the
 * response head; the body streams with backpressure, trailers follow it. Cancellation
 * (req.signal) resets the upstream stream with CANCEL. A stream refused before any
 * response (REFUSED_STREAM, GOAWAY) is reported as `refused` so callers may retry it.
 * `extra` headers (the mesh headers) are added to `head` in the one copy made here.
 */
export function forwardH2(session: ClientHttp2Session, req: ProxyRequest, head: Headers, extra?: Headers): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    const hasBody = req.body !== null;
    const out: OutgoingHttpHeaders = { ...head, ...extra, ':method': req.method, ':scheme': req.scheme, ':authority': req.authority, ':path': req.path };
    try {
      stream = session.request(out, { endStream: !hasBody, waitForTrailers: hasBody });
    } catch (e) {
      reject(new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e }));
      return;
    }
    releaseOnClose(stream);
    let responded = false;
    let trailers: Headers | undefined;
    const signal = req.signal;
    const onAbort = () => stream.close(NGHTTP2_CANCEL);
    signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (stream.rstCode !== NGHTTP2_NO_ERROR) chargeReset(session);
      if (!responded) reject(classifyStreamError(stream, undefined));
    });
    stream.on('error', (err) => {
      if (!responded) reject(classifyStreamError(stream, err));
    });
    if (hasBody) {
      const body = req.body!;
      stream.once('wantTrailers', () => stream.sendTrailers(req.trailers() ?? {}));
      body.on('error', () => stream.close(NGHTTP2_CANCEL));
      body.pipe(stream);
    }
    stream.once('response', (h: IncomingHttpHeaders, flags: number) => {
      responded = true;
      const status = Number(h[':status']);
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      if (endStream) stream.resume();
      else stream.once('trailers', (t: IncomingHttpHeaders) => (trailers = cleanTrailers(t)));
      resolve({ status, headers: cleanHeaders(h), body: endStream ? null : stream, trailers: () => trailers });
    });
  });
}

function classifyStreamError(stream: ClientHttp2Stream, err: unknown): ProxyError {
  if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return new ProxyError('UPSTREAM_RESET', 'stream refused', { cause: err });
  return toProxyError(err ?? Object.assign(new Error(`stream closed (code ${stream.rstCode})`), { code: 'ECONNRESET' }));
}
