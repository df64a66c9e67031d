import { constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { cleanHeaders, cleanTrailers, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = constants;

/**
 * Sends a request as one HTTP/2 stream on an existing session and resolves with the
 * response head; the body streams with backpressure, trailers follow it. Cancellation
 * (req.signal) resets the upstream stream with CANCEL. A stream refused before any
 * response (REFUSED_STREAM, GOAWAY) is reported as `refused` so callers may retry it.
 */
export function forwardH2(session: ClientHttp2Session, req: ProxyRequest, head: Headers): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    const hasBody = req.body !== null;
    const out: OutgoingHttpHeaders = { ...head, ':method': req.method, ':scheme': req.scheme, ':authority': req.authority, ':path': req.path };
    try {
      stream = session.request(out, { endStream: !hasBody, waitForTrailers: hasBody });
    } catch (e) {
      reject(new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e }));
      return;
    }
    let responded = false;
    let trailers: Headers | undefined;
    const onAbort = () => stream.close(NGHTTP2_CANCEL);
    req.signal.addEventListener('abort', onAbort, { once: true });
    stream.on('close', () => req.signal.removeEventListener('abort', onAbort));

    if (hasBody) {
      stream.on('wantTrailers', () => stream.sendTrailers(req.trailers() ?? {}));
      req.body!.pipe(stream);
      req.body!.on('error', () => stream.close(NGHTTP2_CANCEL));
    }
    stream.on('trailers', (t) => {
      trailers = cleanTrailers(t);
    });
    stream.on('response', (h, flags) => {
      responded = true;
      const status = Number(h[':status']);
      const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      if (endStream) stream.resume();
      resolve({ status, headers: cleanHeaders(h), body: endStream ? null : stream, trailers: () => trailers });
    });
    stream.on('error', (err) => {
      if (!responded) reject(classifyStreamError(stream, err));
    });
    stream.on('close', () => {
      if (!responded) reject(classifyStreamError(stream, undefined));
    });
  });
}

function classifyStreamError(stream: ClientHttp2Stream, err: unknown): ProxyError {
  if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return new ProxyError('UPSTREAM_RESET', 'stream refused', { cause: err });
  return toProxyError(err ?? Object.assign(new Error(`stream closed (code ${stream.rstCode})`), { code: 'ECONNRESET' }));
}
