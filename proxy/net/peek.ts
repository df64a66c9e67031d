import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';

export interface PeekDecision<T> {
  /** The bytes so far decide it, or null to read more. */
  readonly decide: (buf: Buffer) => T | null;
  /** The client closed (or half-closed) before a decision. */
  readonly atEnd: (buf: Buffer) => T;
  /** Nothing decisive arrived within the timeout. */
  readonly atTimeout: (buf: Buffer) => T;
}

/**
 * Reads the first bytes of a connection until `decide` knows what they are, then puts
 * them back (unshift) and pauses the socket, so whichever handler takes it (an HTTP
 * parser, the TLS server, a TCP splice) reads the stream from its start.
 */
export function peek<T>(socket: Socket, timeoutMs: number, clock: Clock, d: PeekDecision<T>): Promise<T> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (r: T) => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.pause();
      if (buf.length) socket.unshift(buf);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const r = d.decide(buf);
      if (r !== null) finish(r);
    };
    const onEnd = () => finish(d.atEnd(buf));
    const timer = clock.setTimeout(() => finish(d.atTimeout(buf)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}
