import { Readable } from 'node:stream';
import { isSettled, type SettledBody } from './exchange.js';

class Settled extends Readable implements SettledBody {
  readonly settled = true;
  override _read(): void {
    // Everything was pushed at construction.
  }
}

/**
 * A body whose bytes are all here, pushed with its end at once and marked settled
 * (exchange.ts, isSettled): writers send it with its head in one write (HTTP/1.1) or as
 * one DATA frame with END_STREAM (HTTP/2), and read() gives it whole, synchronously.
 */
export function settledBody(data: Buffer): Readable {
  const b = new Settled();
  b.push(data);
  b.push(null);
  return b;
}

/** The parts of a Readable's state `isWhole` reads (node's ReadableState; not in its typings). */
interface ReadState {
  readonly ended: boolean;
  readonly endEmitted: boolean;
  readonly objectMode: boolean;
  readonly flowing: boolean | null;
  readonly pipes: readonly unknown[];
  readonly decoder: unknown;
}

/**
 * Whether all of a body and its end are buffered already, so that read() gives it whole:
 * a settled body, or any byte stream whose end has been pushed and that nobody has
 * started to take (not flowing, not piped, no decoder). An HTTP/2 request stream is such
 * a body when its HEADERS and DATA with END_STREAM came in one read (a unary gRPC call,
 * a small POST): node processes the whole read before the layers' microtasks run, so by
 * the time the request is forwarded its body is complete. Sending it as one DATA frame
 * with END_STREAM then costs no pipe (a dozen listeners added and removed, a 'data' and
 * an 'end' event per hop) and no separate empty END_STREAM frame.
 */
export function isWhole(body: Readable): boolean {
  if (isSettled(body)) return true;
  if (body.destroyed) return false;
  const st = (body as Readable & { readonly _readableState?: ReadState })._readableState;
  return st !== undefined && st.ended && !st.endEmitted && !st.objectMode && st.flowing !== true && st.pipes.length === 0 && st.decoder == null;
}
