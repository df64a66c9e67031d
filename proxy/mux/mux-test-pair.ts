import { createServer, connect, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MuxSession } from './mux-session.js';
import type { MuxStream } from './mux-stream.js';

/**
 * Two mux sessions over a real loopback TCP connection (the session uses only the socket
 * API a TLS socket shares with TCP), for the mux unit tests. `close()` destroys every pair made.
 */
export class MuxTestPairs {
  private server: Server | null = null;
  private made: MuxSession[] = [];

  /** A loopback TCP connection: the connecting end (`raw`) and the accepted one, both connected. */
  async connection(): Promise<{ raw: Socket; accepted: Socket }> {
    if (this.server === null) {
      const srv = createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      this.server = srv;
    }
    const server = this.server;
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const raw = connect((server.address() as { port: number }).port, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    return { raw, accepted: await accepted };
  }

  /** Sessions a test made itself, destroyed with the pairs. */
  track(...sessions: MuxSession[]): void {
    this.made.push(...sessions);
  }

  async pair(o: { window?: number; connWindow?: number; maxStreams?: number; onStream?: (s: MuxStream) => void } = {}): Promise<{ client: MuxSession; server: MuxSession; raw: Socket }> {
    const { raw, accepted: s } = await this.connection();
    const window = o.window ?? 64 * 1024;
    const connWindow = o.connWindow ?? 1 << 20;
    const maxStreams = o.maxStreams ?? 100;
    // Every stream gets an error listener: the tests end by destroying the sessions.
    const quiet = (st: MuxStream | null) => st?.on('error', () => undefined) ?? null;
    const client = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: window, connectionWindowBytes: connWindow, maxStreams });
    const open = client.open.bind(client);
    client.open = () => quiet(open());
    const peer = new MuxSession(s as unknown as TLSSocket, { client: false, windowBytes: window, connectionWindowBytes: connWindow, maxStreams, peer: 'spiffe://td/ns/a/sa/b', onStream: (st) => o.onStream?.(quiet(st)!) });
    this.made.push(client, peer);
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
