import type { Socket } from 'node:net';
import type { HttpService } from '../http/exchange.js';
import type { LimitName } from '../http/h2-session-guard.js';
import { systemClock } from '../../common/clock.js';
import type { H2ServerSessionOptions } from './h2-server-session.js';

/**
 * The options the frame-level server's unit tests start a session on `socket` with:
 * small header limits (2 KiB soft, 8 KiB hard), every timer and the rapid-reset budget
 * off, `over` on top. Tests only.
 */
export function testServerOptions(socket: Socket, service: HttpService, onLimit: (l: LimitName) => void, over: Partial<H2ServerSessionOptions>): H2ServerSessionOptions {
  return {
    service,
    clock: systemClock,
    maxConcurrentStreams: 100,
    streamWindowBytes: 64 * 1024,
    connectionWindowBytes: 1 << 20,
    maxHeaderBytes: 2048,
    hardCapBytes: 8192,
    headersTimeoutMs: 0,
    idleTimeoutMs: 0,
    streamIdleTimeoutMs: 0,
    prematureResets: null,
    onLimit,
    source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: '' },
    origDst: { address: '10.0.0.1', port: 80 },
    ...over,
  };
}
