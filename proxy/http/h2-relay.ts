import type { Http2Stream } from 'node:http2';
import type { BodyStream } from './exchange.js';

/** The stream a body is relayed into, on the body; and the body, on the stream. */
const DEST = Symbol('wren.relayDest');
const SRC = Symbol('wren.relaySrc');
/** Whether the destination has the shared 'drain' listener (added at the first full write). */
const DRAINING = Symbol('wren.relayDrain');
/** Whether the body is destroyed when the destination closes (a response's upstream body). */
const DESTROY_SRC = Symbol('wren.relayDestroySrc');
/** Whether the rest of the body is read and dropped when the destination closes (stopSending). */
const DROP_REST = Symbol('wren.relayDropRest');

type Src = BodyStream & { [DEST]?: Http2Stream };
type Dest = Http2Stream & { [SRC]?: BodyStream; [DRAINING]?: boolean; [DESTROY_SRC]?: boolean; [DROP_REST]?: boolean };

/**
 * Moves a body into an HTTP/2 stream, ending the stream after it: what `body.pipe(stream)`
 * did, with backpressure (the body pauses when a write returns false and resumes on the
 * stream's 'drain'), for a fraction of its cost per request. pipe() makes eight closures
 * and three once() wrappers per pair, adds six listeners and removes them again, each
 * removal from an Http2Stream going down EventEmitter's slow path (Http2Stream listens for
 * 'removeListener'), and emits 'pipe' and 'unpipe'. Here the listeners are module functions
 * that find their partner through a symbol on the stream (as h2-call.ts does), added once
 * and, on the common path, never removed: release-on-close.ts drops the stream's at close,
 * where the two stop referencing each other (node keeps closed streams alive for
 * scavenges); a body that has not ended by then is paused and its relay listeners removed,
 * as unpipe() leaves it.
 *
 * `onError`: the body failed before its end; the caller resets the stream (a truncated body
 * must never look complete). `destroySrc`: the body is destroyed when the stream closes
 * (a response body whose client went away stops reading its upstream).
 */
export function relayH2Body(src: BodyStream, dest: Http2Stream, onError: (this: BodyStream, err: Error) => void, destroySrc: boolean): void {
  (src as Src)[DEST] = dest;
  (dest as Dest)[SRC] = src;
  if (destroySrc) (dest as Dest)[DESTROY_SRC] = true;
  dest.on('close', onDestClose);
  src.on('error', onError);
  src.on('end', onSrcEnd);
  src.on('data', onSrcData);
  // An explicitly paused body does not start flowing on a 'data' listener (pipe() resumes it too).
  if (src.readableFlowing !== true) src.resume();
}

/** The stream a body is being relayed into (for the caller's error handler), or undefined. */
export function relayDestOf(src: BodyStream): Http2Stream | undefined {
  return (src as Src)[DEST];
}

/**
 * The destination's peer answered in full and asked for no more of the body (RST_STREAM
 * NO_ERROR, RFC 9113 section 8.1): when the stream closes, the rest of the body is read
 * and dropped, so its sender finishes instead of waiting on a body no one reads. Called
 * before the stream's 'close' reaches the relay.
 */
export function stopSending(dest: Http2Stream): void {
  (dest as Dest)[DROP_REST] = true;
}

const ignore = (): void => undefined;

function onSrcData(this: Src, chunk: Buffer): void {
  const dest = this[DEST] as Dest | undefined;
  if (dest === undefined || dest.destroyed || dest.writableEnded) {
    this.pause();
    return;
  }
  if (dest.write(chunk)) return;
  this.pause();
  if (dest[DRAINING] !== true) {
    dest[DRAINING] = true;
    dest.on('drain', onDestDrain);
  }
}

function onDestDrain(this: Dest): void {
  const src = this[SRC];
  if (src !== undefined && !src.destroyed) src.resume();
}

function onSrcEnd(this: Src): void {
  const dest = this[DEST];
  this[DEST] = undefined;
  if (dest !== undefined && !dest.destroyed && !dest.writableEnded) dest.end();
}

function onDestClose(this: Dest): void {
  const src = this[SRC];
  this[SRC] = undefined;
  if (src === undefined) return;
  (src as Src)[DEST] = undefined;
  if (this[DESTROY_SRC] === true) {
    // A response body that ended is let be: its upstream stream may still carry the rest
    // of the request (RFC 9113 section 8.1: a response before the request's end), and
    // node:http2 resets a client stream destroyed before its END_STREAM went out with
    // RST_STREAM NO_ERROR in its place, which the next hop must take for a cut upload.
    // It closes once the request ends, or is cancelled with the request (h2-call.ts onAbort).
    if (!src.readableEnded) src.destroy();
  } else if (!src.readableEnded) {
    // Closed before the body's end (a reset, a refused stream): the body is let go of,
    // paused, with nothing of this relay left on it, so a retry can send it again from
    // where it stands (replayable-body.ts) as after an unpipe(). Unless the peer asked
    // for no more of it (stopSending): then it is read on and dropped.
    src.removeListener('data', onSrcData);
    src.removeListener('end', onSrcEnd);
    if (this[DROP_REST] !== true) src.pause();
    else {
      src.on('error', ignore);
      src.resume();
    }
  }
}
