import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { HttpService } from '../http/exchange.js';
import type { LimitName } from '../http/h2-session-guard.js';
import { systemClock } from '../../common/clock.js';
import { H2ServerSession, type H2ServerSessionOptions } from './h2-server-session.js';

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

/** A loopback listener on port 0 and the frame-level sessions it is serving. */
export interface FrameServer {
  readonly server: Server;
  readonly port: number;
  /** The live sessions (removed when their socket closes). */
  readonly sessions: Set<H2ServerSession>;
  /** Destroys every session and closes the listener. */
  close(): Promise<void>;
}

/** Serves each connection with a session from testServerOptions (`over()` read per connection, so a test can change it). Tests only. */
export async function frameServer(service: HttpService, onLimit: (l: LimitName) => void, over: () => Partial<H2ServerSessionOptions>): Promise<FrameServer> {
  const sessions = new Set<H2ServerSession>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const s = new H2ServerSession(socket, testServerOptions(socket, service, onLimit, over()));
    sessions.add(s);
    socket.on('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sessions,
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
