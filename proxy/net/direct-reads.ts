import type { Socket } from 'node:net';

/** A socket-like stream that can hand its reads to one function directly (the mesh multiplexer's streams, proxy/mux/mux-stream.ts). */
interface DirectReads {
  setSink(fn: ((d: Buffer) => void) | null): void;
}

/**
 * Has `socket` hand each read to `fn` directly, bypassing its Readable, if it can (null: its
 * 'data' events again); a plain socket keeps its 'data' events. The reader listens to 'data'
 * too, which gets what arrived while it was paused.
 */
export function setDirectReads(socket: Socket, fn: ((d: Buffer) => void) | null): void {
  (socket as Socket & Partial<DirectReads>).setSink?.(fn);
}
