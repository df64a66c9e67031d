import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { nodeTimerMs, type Clock, type Timer } from '../../common/clock.js';
import { takeEndedHead } from './peek.js';

/** How long the other side has to finish once one side half-closed (ended cleanly) before both are destroyed. */
const HALF_CLOSE_TIMEOUT_MS = 30_000;

/**
 * A tunnel on which no byte moves either way for `ms` is closed, both sides, and `fired`
 * is told 'tcp-idle-timeout' (wren_limit_exceeded_total{limit="tcp-idle-timeout"}): Envoy's
 * TCP proxy `idle_timeout` (1 h by default, as Istio leaves it; limits.tcpIdleTimeoutMs).
 * 0: none. A listener makes one and shares it among its tunnels (opaque TCP and upgrades
 * after their 101 alike). When the wait after a half-close runs out (`halfCloseMs`,
 * HALF_CLOSE_TIMEOUT_MS by default), `fired` is told 'tcp-half-close-timeout'.
 */
export interface SpliceIdle {
  readonly ms: number;
  readonly clock: Clock;
  /** A limit hit, as counted in wren_limit_exceeded_total{limit}. */
  readonly fired: (limit: 'tcp-idle-timeout' | 'tcp-half-close-timeout') => void;
  /** The wait after a half-close; HALF_CLOSE_TIMEOUT_MS unless a test sets it. */
  readonly halfCloseMs?: number;
}

/**
 * Splices two duplex streams with backpressure both ways, counting bytes. Half-close
 * is propagated (end on one side ends the other's writable side); an error or reset
 * on either side destroys both, so neither end hangs. So does a side closed without a
 * clean end (destroyed: an HTTP/2 stream torn down with its session at shutdown, a
 * socket a close() dropped): nothing more can reach the other side through it, which
 * is torn down at once, as Envoy's TCP proxy closes the downstream when the upstream
 * connection goes away and ztunnel drops both halves of a tunnel at its drain deadline.
 * Only a side that ended cleanly (half-closed) leaves the other its 30 s to finish
 * (SpliceIdle.halfCloseMs), counted as limit="tcp-half-close-timeout" when it runs out.
 * Returns the byte counts, which go on counting until both sides have closed.
 */
export function splice(a: Socket | Duplex, b: Duplex, onDone?: (bytes: SplicedBytes) => void, idle?: SpliceIdle): SplicedBytes {
  const bytes: SplicedBytes = { aToB: 0, bToA: 0 };
  // The idle clock: a byte read on either side is a byte moving (what is read is written to the other).
  const watch = idle !== undefined && idle.ms > 0 ? idle : undefined;
  let lastMoved = watch?.clock.approxNow() ?? 0;
  a.on('data', (d: Buffer) => {
    bytes.aToB += d.length;
    if (watch) lastMoved = watch.clock.approxNow();
  });
  b.on('data', (d: Buffer) => {
    bytes.bToA += d.length;
    if (watch) lastMoved = watch.clock.approxNow();
  });
  let finished = false;
  let idleTimer: Timer | undefined;
  const finish = () => {
    if (finished) return;
    finished = true;
    if (idleTimer !== undefined) watch!.clock.clearTimeout(idleTimer);
    onDone?.(bytes);
  };
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
    finish();
  };
  // One timer per tunnel, not one per chunk: when it fires it re-arms for what is left of
  // the window since the last byte, and only a whole quiet window closes the tunnel.
  const checkIdle = (): void => {
    idleTimer = undefined;
    if (finished) return;
    const quiet = watch!.clock.now() - lastMoved;
    if (quiet >= watch!.ms) {
      watch!.fired('tcp-idle-timeout');
      return destroyBoth();
    }
    armIdle(watch!.ms - quiet);
  };
  const armIdle = (ms: number): void => {
    idleTimer = watch!.clock.setTimeout(checkIdle, nodeTimerMs(ms));
    idleTimer.unref?.();
  };
  if (watch) armIdle(watch.ms);
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  // What the client sent before a FIN that came during detection (peek.ts endedHeads) goes first; the pipe then relays the FIN.
  const head = takeEndedHead(a);
  if (head) {
    bytes.aToB += head.length;
    b.write(head);
  }
  a.pipe(b);
  b.pipe(a);
  let closed = 0;
  // The other side did not close within the wait after a half-close: counted, then torn down.
  const halfCloseExpired = (): void => {
    if (closed >= 2 || finished) return;
    idle?.fired('tcp-half-close-timeout');
    destroyBoth();
  };
  const onClose = (side: Duplex, other: Duplex) => () => {
    if (++closed === 2) finish();
    else if (!side.readableEnded) destroyBoth();
    else {
      // Its pipe into the side now closed is gone, and the pipe paused it: bytes its peer
      // still sends (a TLS client's close_notify alert after the server's) would sit unread
      // in front of its end, so it would never close and would hold the connection for the
      // 30 s. Read on, into nothing (there is nowhere left to send them), to see its end.
      other.resume();
      setTimeout(halfCloseExpired, idle?.halfCloseMs ?? HALF_CLOSE_TIMEOUT_MS).unref();
    }
  };
  a.on('close', onClose(a, b));
  b.on('close', onClose(b, a));
  return bytes;
}

/** The bytes a splice has carried each way so far (live: read it while the splice runs, as the istio_tcp_* byte counters do). */
export interface SplicedBytes {
  aToB: number;
  bToA: number;
}
