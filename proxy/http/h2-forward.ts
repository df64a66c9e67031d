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
      // The session is closing (GOAWAY) or gone: the stream was never sent.
      reject(refused(new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e })));
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

/** Errors of streams the upstream never processed (RFC 9113 §8.7): safe to retry. */
const REFUSED = new WeakSet<object>();

function refused(e: ProxyError): ProxyError {
  REFUSED.add(e);
  return e;
}

/**
 * Whether forwardH2 failed with a stream the upstream did not process: RST_STREAM
 * REFUSED_STREAM, a stream above a GOAWAY's last stream id (node:http2 closes those with
 * REFUSED_STREAM too), or a session that no longer took streams.
 */
export function wasRefused(err: unknown): boolean {
  return typeof err === 'object' && err !== null && REFUSED.has(err);
}

function classifyStreamError(stream: ClientHttp2Stream, err: unknown): ProxyError {
  if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return refused(new ProxyError('UPSTREAM_RESET', 'stream refused', { cause: err }));
  return toProxyError(err ?? Object.assign(new Error(`stream closed (code ${stream.rstCode})`), { code: 'ECONNRESET' }));
}
