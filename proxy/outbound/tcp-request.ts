import type { Socket } from 'node:net';
import type { ProxyRequest } from '../http/exchange.js';
import type { Destination } from './route-table.js';
import { DOWNSTREAM_SOCKET } from '../access-log/tcp-access-log.js';
import type { CancelSignal } from '../../common/cancel.js';

const noTrailers = (): undefined => undefined;

/**
 * An opaque TCP connection as the request the outbound layers see (origProto 'TCP'):
 * method CONNECT (RFC 9110 section 9.3.6: "establish a tunnel"), no body, no headers and
 * no authority, so routing goes by the connection's destination alone (its original
 * destination, or an upstream listener's service). The layers then treat it as any
 * request: admission, retries of connect failures, pick (pinning, ejection, breakers),
 * the connect timeout and the error mapping. `signal` aborts when the client goes away.
 */
export function tcpRequest(socket: Socket, dst: Destination | undefined, signal: CancelSignal, now: number): ProxyRequest {
  const req = {
    method: 'CONNECT',
    scheme: '',
    authority: '',
    path: '',
    headers: {},
    body: null,
    trailers: noTrailers,
    origProto: 'TCP' as const,
    source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: '' },
    origDst: dst,
    signal,
    startedAt: now,
    // The access log reads the connection's byte counters when it closes (tcp-access-log.ts).
    [DOWNSTREAM_SOCKET]: socket,
  };
  return req;
}
