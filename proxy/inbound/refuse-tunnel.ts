import type { ServerHttp2Stream } from 'node:http2';
import { tunnelRefusal } from '../errors/error-response.js';
import type { ProxyError } from '../errors/proxy-error.js';
import { writeH2Response } from '../http/write-response.js';
import type { Headers } from '../http/headers.js';

/** Answers a peer's CONNECT stream that gets no tunnel, through the one error mapping (tunnelRefusal). */
export function refuseTunnel(stream: ServerHttp2Stream, e: ProxyError, extra?: Headers): void {
  writeH2Response(stream, tunnelRefusal(e, extra));
}
