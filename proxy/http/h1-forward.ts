import { request, type Agent, type IncomingMessage } from 'node:http';
import { toProxyError } from '../errors/proxy-error.js';
import { cleanHeaders, cleanTrailers, type Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';

/**
 * Sends a request as HTTP/1.1 over a keep-alive agent (used to deliver to a local app
 * that speaks HTTP/1, and to unmeshed HTTP/1 endpoints). The body is piped with
 * backpressure; request trailers are forwarded when the body was chunked.
 */
export function forwardH1(agent: Agent, host: string, port: number, req: ProxyRequest, head: Headers): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...head, host: req.authority };
    const upstream = request({ host, port, method: req.method, path: req.path, headers, agent, signal: req.signal, setHost: false });
    let responded = false;
    upstream.on('response', (res: IncomingMessage) => {
      responded = true;
      const bodyless = req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
      if (bodyless) res.resume();
      resolve({ status: res.statusCode ?? 502, headers: cleanHeaders(res.headers), body: bodyless ? null : res, trailers: () => cleanTrailers(res.trailers) });
    });
    upstream.on('error', (err) => {
      if (!responded) reject(toProxyError(err));
    });
    if (req.body) {
      req.body.on('end', () => {
        const t = req.trailers();
        if (t && upstream.chunkedEncoding) upstream.addTrailers(t);
      });
      req.body.pipe(upstream);
    } else {
      upstream.end();
    }
  });
}
