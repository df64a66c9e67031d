import { createServer, connect, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MuxSession, type MuxLimit, type MuxSessionOptions } from './mux-session.js';
import type { MuxStream } from './mux-stream.js';
import { FLAG_FIN, FrameType, type FrameSink } from './frame.js';

/**
 * Two mux sessions over a real loopback TCP connection (the session uses only the socket
 * API a TLS socket shares with TCP), for the mux unit tests. `close()` destroys every pair made.
 */
export class MuxTestPairs {
  private server: Server | null = null;
  private made: MuxSession[] = [];

  /** A loopback TCP connection: the connecting end (`raw`; `allowHalfOpen`: it does not end its side when the other does) and the accepted one, both connected. */
  async connection(o: { allowHalfOpen?: boolean } = {}): Promise<{ raw: Socket; accepted: Socket }> {
    if (this.server === null) {
      const srv = createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      this.server = srv;
    }
    const server = this.server;
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const raw = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', allowHalfOpen: o.allowHalfOpen === true });
    await new Promise((r) => raw.once('connect', r));
    return { raw, accepted: await accepted };
  }

  /** Sessions a test made itself, destroyed with the pairs. */
  track(...sessions: MuxSession[]): void {
    this.made.push(...sessions);
  }

  /**
   * `closeTimeoutMs` for both sessions (default the sessions'); `onLimit`: the server's limits.
   * `client`: more of the client's options (its keepalive, clock, limits); `pings`: which
   * ends speak wren-mux/2 (usePing; default none, as on wren-mux/1).
   */
  async pair(o: { window?: number; connWindow?: number; maxStreams?: number; closeTimeoutMs?: number; onStream?: (s: MuxStream) => void; onLimit?: (l: MuxLimit) => void; client?: Partial<MuxSessionOptions>; pings?: { client: boolean; server: boolean } } = {}): Promise<{ client: MuxSession; server: MuxSession; raw: Socket }> {
    const { raw, accepted: s } = await this.connection();
    const window = o.window ?? 64 * 1024;
    const connWindow = o.connWindow ?? 1 << 20;
    const maxStreams = o.maxStreams ?? 100;
    // Every stream gets an error listener: the tests end by destroying the sessions.
    const quiet = (st: MuxStream | null) => st?.on('error', () => undefined) ?? null;
    const closeTimeoutMs = o.closeTimeoutMs;
    const client = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: window, connectionWindowBytes: connWindow, maxStreams, closeTimeoutMs, ...o.client });
    const open = client.open.bind(client);
    client.open = () => quiet(open());
    const peer = new MuxSession(s as unknown as TLSSocket, { client: false, windowBytes: window, connectionWindowBytes: connWindow, maxStreams, closeTimeoutMs, onLimit: o.onLimit, peer: 'spiffe://td/ns/a/sa/b', onStream: (st) => o.onStream?.(quiet(st)!) });
    this.made.push(client, peer);
    if (o.pings?.client === true) client.usePing();
    if (o.pings?.server === true) peer.usePing();
    return { client, server: peer, raw };
  }

  destroyAll(): void {
    for (const m of this.made) m.destroy();
    this.made = [];
  }

  close(): void {
    this.destroyAll();
    this.server?.close();
  }
}

/** One turn of the event loop. */
export const tick = (): Promise<unknown> => new Promise((r) => setImmediate(r));

/** Turns the event loop until `cond` holds; throws (failing the test) if it does not within 200 turns. */
export async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  if (!cond()) throw new Error(`condition not reached within 200 turns of the event loop: ${cond.toString()}`);
}

/**
 * A deframer sink recording whole frames, [type, flags, id, payload] (latin1 for DATA, hex
 * for a control frame's u32), for the framing tests: a DATA frame's pieces are joined until
 * its FIN, another stream's piece or a control frame (frames of one stream back to back
 * without FIN read as one). Pieces are read at the call, as the sink's contract says.
 */
export function frameRecorder(): FrameSink & { readonly frames: [number, number, number, string][] } {
  const frames: [number, number, number, string][] = [];
  let open: [number, number, number, string] | null = null;
  return {
    frames,
    data(id, piece, fin) {
      if (open === null || open[2] !== id) frames.push((open = [FrameType.Data, 0, id, '']));
      open[3] += piece.toString('latin1');
      if (fin) {
        open[1] = FLAG_FIN;
        open = null;
      }
    },
    control(type, id, value, flags) {
      open = null;
      frames.push([type, flags, id, (value >>> 0).toString(16).padStart(8, '0')]);
    },
    malformed(why) {
      open = null;
      frames.push([-1, 0, 0, why]);
    },
  };
}
