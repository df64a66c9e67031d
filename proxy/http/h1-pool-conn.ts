/**
 * A pooled HTTP/1.1 connection (h1-pool.ts): its socket and reads, the response parser's
 * handler, the connect and idle timeouts, and whether it is reused once an exchange ends.
 * Apart from the pool because it is the largest part and changes on its own (read paths,
 * timers); it knows its origin only by the shape below, as h1-pool.ts creates connections.
 */

import { Socket, type OnReadOpts } from 'node:net';
import { ProxyError } from '../errors/proxy-error.js';
import { H1Parser, type H1Handler } from '../h1/parser.js';
import { fieldsToHeaders, type H1Head } from '../h1/head.js';
import type { H1Error } from '../h1/h1-error.js';
import { MAX_INTERIM_RESPONSES, type H1Limits as CodecLimits } from '../h1/limits.js';
import { setDirectReads } from '../net/direct-reads.js';
import { lentCopy, SocketReleases } from '../net/body-buffers.js';
import { inTurn } from '../../common/deferred.js';
import type { Clock, Timer } from '../../common/clock.js';
import type { Slot } from './h1-pool-options.js';
import type { Exchange } from './h1-pool-exchange.js';
import { dropNotFromApp } from './headers.js';

/**
 * What a connection uses of its origin and pool (h1-pool.ts Origin, H1Pool). A shape, not
 * those classes: h1-pool.ts imports this file, and madge counts a type import in a cycle.
 */
interface ConnOrigin {
  readonly host: string;
  readonly port: number;
  readonly peer: string;
  readonly draining: boolean;
  readonly pool: {
    readonly idleTimeoutMs: number;
    readonly maxIdleTimeoutMs: number;
    readonly limits: CodecLimits;
    readonly connectFn: (host: string, port: number, peer: string, onread?: OnReadOpts, timeoutMs?: number) => Socket;
    readonly secure: boolean;
    readonly onConnection: (() => void) | undefined;
    readonly onIdleTimeout: (() => void) | undefined;
    readonly onLimit: ((limit: 'interim-responses') => void) | undefined;
    readonly fromApp: boolean;
    readonly meshH2: boolean;
    readonly clock: Clock;
    readonly generation: number;
  };
  release(conn: Conn): void;
  closed(conn: Conn): void;
}

/**
 * Read buffer sizes per connection (net.Socket's `onread`). A TLS socket hands over at most
 * one record's plaintext (16 KiB) per callback; 64 KiB is what node reads from TCP by
 * default. Pages never written stay out of RSS, so an idle connection costs little.
 */
const TCP_READ_BUFFER = 64 * 1024;
const TLS_READ_BUFFER = 16 * 1024;

/** Taken off a server's keep-alive hint: a request sent as the hinted time runs out would meet a closing connection. */
const KEEP_ALIVE_MARGIN_MS = 1000;

export class Conn implements H1Handler {
  readonly socket: Socket;
  private readonly parser: H1Parser;
  ex: Exchange | null = null;
  private head: H1Head | null = null;
  private reused = false;
  private dead = false;
  /** The transport (TCP, or TLS with the peer verified) is up: the connect timeout no longer applies. */
  private connected = false;
  /** Response bytes arrived for the exchange in flight (a stale connection sends none). */
  private gotBytes = false;
  /** The parser ended the response in flight (it pauses there, so later bytes stay unread). */
  private ended = false;
  /** Interim (1xx) responses to the exchange in flight (at most MAX_INTERIM_RESPONSES). */
  private interim = 0;
  private idleMs: number;
  /** When the connection last became idle (the pool's clock). */
  private idleSince = 0;
  /** The idle timer, armed while the connection is (or lately was) idle, and when it is due. */
  private idleTimer: Timer | null = null;
  private idleDue = 0;
  private readonly connectTimeoutMs: number;
  /** The bytes being parsed are a view of the read buffer (onread): body chunks must be copied. */
  private inBuffer = false;
  /** Every read is a view of a shared read buffer (a mux stream's payloads, setDirectReads): body chunks must be copied. */
  private readonly viewReads: boolean;
  /** Lent request body buffers written to a node socket (TCP or TLS), until it has written them (null: a mux stream's session hands them back). */
  readonly releases: SocketReleases | null;
  private readonly generation: number;

  constructor(
    readonly origin: ConnOrigin,
    private readonly slot: Slot | null,
    connectTimeoutMs: number,
  ) {
    const pool = origin.pool;
    this.idleMs = pool.idleTimeoutMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.generation = pool.generation;
    this.parser = new H1Parser(this, true, pool.limits);
    // Reads land in this connection's own buffer and go straight to the parser (net.Socket
    // onread): no Buffer allocated per read, no Readable push / 'data' event per response.
    // The parser copies what it keeps across reads; body chunks are copied in onBody.
    const onread: OnReadOpts = {
      buffer: Buffer.allocUnsafeSlow(pool.secure ? TLS_READ_BUFFER : TCP_READ_BUFFER),
      callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer), // true: pausing is onBody's
    };
    const s = (this.socket = pool.connectFn(origin.host, origin.port, origin.peer, onread, connectTimeoutMs));
    s.setNoDelay(true);
    // The connect timeout: until the transport is up, socket inactivity is the connect taking too long.
    if (connectTimeoutMs > 0) s.setTimeout(connectTimeoutMs);
    s.once(pool.secure ? 'secureConnect' : 'connect', () => this.onConnect());
    // A connect function that ignored onread; a mesh multiplexer stream hands its payloads
    // straight to onSocketData (setDirectReads): views of its session's read buffer when the
    // session reads into the shared one, copied in onBody as onread's are.
    const onData = (d: Buffer): void => this.onSocketData(d);
    s.on('data', onData);
    this.viewReads = setDirectReads(s, onData);
    this.releases = s instanceof Socket ? new SocketReleases(s) : null;
    s.on('drain', () => {
      this.releases?.settle();
      this.ex?.onDrain();
    });
    s.on('end', () => this.onSocketEnd());
    s.on('error', (e) => this.close(e));
    s.on('close', () => this.close(null));
    s.on('timeout', () => this.onConnectTimeout());
  }

  private onConnect(): void {
    this.connected = true;
    // The socket's own inactivity timer was the connect timeout only: node re-arms it on
    // every read and write (1.2 % of an inbound sidecar at HTTP/1.1 saturation, for the app's
    // connections), and the idle timeout needs none of that (idle()).
    if (this.connectTimeoutMs > 0) this.socket.setTimeout(0);
    const ex = this.ex;
    if (ex !== null) {
      ex.unwait(); // strictLimits, sessionStreams: no longer pending
      // It waited for this connection: its latency for the balancer starts now (Exchange.sentAt).
      ex.sentAt = this.origin.pool.clock.approxNow();
      ex.hasConnection();
    }
    this.origin.pool.onConnection?.();
    if (this.sendOnConnect) {
      this.sendOnConnect = false;
      this.ex?.send(this.socket);
    }
  }

  private onConnectTimeout(): void {
    const o = this.origin;
    if (!this.connected) this.close(new ProxyError('CONNECT_TIMEOUT', `${o.host}:${o.port} after ${this.connectTimeoutMs} ms`));
  }

  /**
   * The idle timeout: the connection closes `idleMs` after it last became idle. One timer,
   * not re-armed per request: when it fires it looks at how long the connection has been
   * idle and waits for the rest, or lets a busy connection be (the next idle() arms it
   * again). So a request costs one clock read here, where the socket's own timer was
   * re-armed by node on every read and write.
   */
  private armIdle(due: number, now: number): void {
    const clock = this.origin.pool.clock;
    if (this.idleTimer !== null) clock.clearTimeout(this.idleTimer);
    this.idleDue = due;
    this.idleTimer = clock.setTimeout(this.onIdleTimer, due - now);
    this.idleTimer.unref?.();
  }

  private readonly onIdleTimer = (): void => {
    this.idleTimer = null;
    if (this.dead || this.ex !== null) return;
    const now = this.origin.pool.clock.now();
    const due = this.idleSince + this.idleMs;
    if (now < due) return this.armIdle(due, now);
    this.origin.pool.onIdleTimeout?.();
    this.close(null);
  };

  private onRead(n: number, buf: Buffer): boolean {
    this.inBuffer = true;
    try {
      this.onSocketData(buf.subarray(0, n));
    } finally {
      this.inBuffer = false;
    }
    return true;
  }

  start(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    ex.reused = this.reused;
    this.head = null;
    this.gotBytes = false;
    this.ended = false;
    this.interim = 0;
    this.parser.setRequestMethod(ex.req.method);
    this.parser.resume();
    this.socket.resume();
    // A request body is read only once the connection is up: a connect that fails
    // (refused, timed out, the peer's identity wrong) has then consumed none of it, and the
    // retry layer can send the request to another endpoint (Envoy retries connect-failure
    // whatever the body). A bodyless head can wait in the socket's buffer.
    // Its per-try timers (Exchange.connWait) stop while this connection comes up, and start
    // again once it is (onConnect).
    if (this.connected) ex.hasConnection();
    else ex.waitsForConnection();
    if (this.connected || ex.req.body === null) ex.send(this.socket);
    else this.sendOnConnect = true;
  }

  /** The exchange started before the connection was up, and its request waits for it (start()). */
  private sendOnConnect = false;

  idle(): void {
    this.reused = true;
    const now = this.origin.pool.clock.approxNow();
    this.idleSince = now;
    const due = now + this.idleMs;
    // Armed already for no later than this idle period ends: it re-checks when it fires.
    if (this.idleTimer === null || this.idleDue > due) this.armIdle(due, now);
  }

  // H1Handler: the parser reports to the exchange in flight; the connection decides about reuse once it returns.
  onHead(head: H1Head): void {
    const st = head.status;
    if (st < 200 && st !== 101) {
      // Interim (100 Continue, 103 Early Hints): the final response follows; a server that
      // sends them without end is refused (h1/limits.ts MAX_INTERIM_RESPONSES).
      if (++this.interim <= MAX_INTERIM_RESPONSES) return;
      // No more of this read is parsed: the rest of its heads are the same flood.
      this.parser.pause();
      this.origin.pool.onLimit?.('interim-responses');
      return this.close(new ProxyError('UPSTREAM_PROTOCOL', `more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`));
    }
    // Never asked to switch protocols (upgrades take h1-upgrade.ts): a 101 here is a broken server.
    if (st === 101 || head.upgrade) return this.close(new ProxyError('UPSTREAM_PROTOCOL', 'unexpected 101 Switching Protocols'));
    this.head = head;
    // The server's hint for this connection (as undici takes it: less a margin for the time
    // the next request takes to reach it), else the pool's own idle timeout.
    const hint = head.keepAliveTimeoutMs;
    const pool = this.origin.pool;
    this.idleMs = hint >= 0 ? Math.max(0, Math.min(pool.maxIdleTimeoutMs, hint - KEEP_ALIVE_MARGIN_MS)) : pool.idleTimeoutMs;
    this.ex!.onHead(head);
  }

  onBody(chunk: Buffer): void {
    // A view of the read buffer, which the next read overwrites, is copied: into a block the
    // response's last holder hands back (body-buffers.ts), as a response body is passed on
    // whole and never kept for a replay.
    if (!this.ex!.push(this.inBuffer || this.viewReads ? lentCopy(chunk) : chunk)) this.socket.pause();
  }

  onTrailers(fields: string[]): void {
    const t = fieldsToHeaders(fields, true);
    if (this.origin.pool.fromApp) dropNotFromApp(t);
    for (const _ in t) return void (this.ex!.trailers = t);
  }

  onEnd(): void {
    this.ended = true;
    this.parser.pause();
  }

  onUpgrade(): void {
    // Not reached: a 101 (or a 2xx to CONNECT, never sent here) closes the connection in onHead.
  }

  onError(err: H1Error): void {
    this.close(err);
  }

  private onSocketData(d: Buffer): void {
    inTurn(this.read, this, d);
  }

  private read(d: Buffer): void {
    const ex = this.ex;
    // Bytes from the server while no request is outstanding: the connection is unusable.
    if (ex === null || this.ended) return this.close(null);
    this.gotBytes = true;
    const used = this.parser.execute(d);
    if (!this.ended || this.ex !== ex) return;
    // Bytes after the response's end, before the next request was sent: the connection cannot be reused.
    this.complete(ex, used === d.length);
  }

  private onSocketEnd(): void {
    const ex = this.ex;
    // The server ended its side with no response due: the connection takes no more requests.
    // A TCP or TLS socket closes by itself (allowHalfOpen false); a mesh multiplexer stream
    // (allowHalfOpen) stayed half-open in the idle list, to be reused for a request the server
    // never reads, and held the server's side until its delayed close destroyed it.
    if (ex === null) return this.close(null);
    // Its response is whole (a body still being sent, meshH2): exchangeDone does not reuse it.
    if (this.ended) return;
    this.parser.finish(); // ends a close-delimited body; a cut-short response goes to onError
    if (this.ended && this.ex === ex) return this.complete(ex, false);
    // Nothing of a response arrived (finish() says nothing for an idle parser).
    if (this.ex === ex) this.close(new ProxyError('UPSTREAM_RESET', 'connection closed before a response'));
  }

  /** The response ended: reuse the connection if it is clean, else close it. */
  private complete(ex: Exchange, clean: boolean): void {
    ex.end();
    // An HTTP/2 request (meshH2) may get its whole response before its body has gone out
    // (RFC 9113 section 8.1: a gRPC call answered before the client's half-close, a server
    // that answers and reads on): the upload goes on, as on an HTTP/2 stream, until the
    // body's end (uploaded()) or the caller's cancel (fail(): the connection is reset). Not
    // when the response says the connection closes: that server reads no more (RFC 9112
    // section 9.6), so the upload stops there, as HTTP/1.1's.
    if (clean && !ex.sent && ex.req.body !== null && this.origin.pool.meshH2 && this.head?.keepAlive === true && !this.dead) return;
    this.exchangeDone(ex, clean);
  }

  /** The request body of an exchange whose response had ended has gone out whole: both directions ended. */
  uploaded(ex: Exchange): void {
    if (this.ex === ex && this.ended) this.exchangeDone(ex, true);
  }

  private exchangeDone(ex: Exchange, clean: boolean): void {
    this.ex = null;
    ex.conn = null;
    ex.detach();
    // idleMs 0: the server's keep-alive hint leaves no safe time to reuse the connection.
    if (!clean || this.head?.keepAlive !== true || !ex.sent || this.idleMs <= 0 || this.dead || this.socket.destroyed || this.socket.readableEnded || this.generation !== this.origin.pool.generation || this.origin.draining) return this.close(null);
    this.origin.release(this);
  }

  /** Close the connection; the exchange on it (if any) fails with `err`. */
  close(err: unknown): void {
    if (this.dead) return;
    this.dead = true;
    if (this.idleTimer !== null) this.origin.pool.clock.clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.slot?.release();
    const ex = this.ex;
    // Closing in the middle of sending a request body: reset (RST), not FIN. A FIN queues
    // behind request bytes the kernel still holds for an app that stopped reading, so the
    // app's end would stay ESTABLISHED, its request never cancelled, until TCP gives up
    // (issue 11, item 3).
    if (ex !== null && !ex.sent && ex.req.body !== null && !this.socket.destroyed && !this.socket.connecting && !this.origin.pool.secure) this.socket.resetAndDestroy();
    else this.socket.destroy();
    this.ex = null;
    this.origin.closed(this);
    if (!ex) return;
    ex.conn = null;
    ex.unwait();
    ex.onConnectionLost(err, this.gotBytes);
  }
}
