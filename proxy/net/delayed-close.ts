import type { Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import type { Clock, Timer } from '../../common/clock.js';

/**
 * Envoy's delayed_close_timeout default (1 s): once a server has ended its side of a
 * connection, how long the client has to close its own, or, while the server's last bytes
 * are still being written, how long they may go without moving, before the socket is
 * destroyed (limits.delayedCloseTimeoutMs).
 */
export const DEFAULT_DELAYED_CLOSE_MS = 1000;

type QueueHandle = { writeQueueSize?: unknown; _parent?: QueueHandle } | null | undefined;

/**
 * What node holds unwritten for a socket: its write buffer, and what its handle (a TLS
 * socket's, and the TCP handle under it) has not handed to the kernel yet. Once a socket
 * takes no more writes (ended, or a response being flushed) nothing is added, so a change
 * is progress. A mesh multiplexer stream has no handle: its write buffer alone.
 */
export function unwritten(s: Socket): number {
  const h = (s as unknown as { _handle?: QueueHandle })._handle;
  return s.writableLength + queued(h) + queued(h?._parent);
}

function queued(h: QueueHandle): number {
  const n = h?.writeQueueSize;
  return typeof n === 'number' ? n : 0;
}

/**
 * A node:http response that has been ended (admin and metrics ports) must be written
 * within `ms` of no progress, or its socket is destroyed and `onFire` called: node
 * destroys a `connection: close` socket once its response is written and runs a keep-alive
 * socket's idle timer from then, but waits without end for a client that does not read
 * (each such socket held with its response, and on the metrics port its place under the
 * connection cap). Any progress starts the wait again, as Envoy's delayed close does. A
 * timer per response ended, off the data path. 0: off.
 */
export function boundFlush(res: ServerResponse, clock: Clock, ms: number, onFire?: () => void): void {
  const socket = res.socket;
  if (socket === null || ms <= 0 || !res.writableEnded || res.writableFinished || socket.destroyed) return;
  let left = unwritten(socket);
  let timer: Timer | null = null;
  const stop = (): void => {
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
    res.removeListener('finish', stop);
    socket.removeListener('close', stop);
  };
  const check = (): void => {
    timer = null;
    if (socket.destroyed || res.writableFinished) return stop();
    const now = unwritten(socket);
    if (now !== left) {
      left = now;
      return arm();
    }
    stop();
    onFire?.();
    socket.destroy();
  };
  const arm = (): void => {
    timer = clock.setTimeout(check, ms);
    timer.unref?.();
  };
  res.once('finish', stop);
  socket.once('close', stop);
  arm();
}
