import { connect as netConnect } from 'node:net';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Headers } from '../http/headers.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { H2ClientSession, wasRefusedByApp } from './h2-client-session.js';
import type { LimitName } from '../http/h2-session-guard.js';

export interface AppH2ClientOptions {
  readonly address: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly connectTimeoutMs: number;
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  readonly maxHeaderListBytes: number;
  /** Resets a session may see before it is retired, below the app's own rapid-reset limit (proxy.ts). */
  readonly resetBudget: number;
  readonly onResetBudget?: () => void;
  /** PING every intervalMs; a session that does not answer within timeoutMs is destroyed (limits.peerKeepalive). */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
  readonly onKeepaliveTimeout?: () => void;
  readonly onConnection?: () => void;
  /** A session's flood guard fired (H2ClientSessionOptions.onLimit): the inbound counts it. */
  readonly onLimit?: (limit: LimitName) => void;
}

/**
 * HTTP/2 to the local app on the frame-level client (h2-client-session.ts): one h2c
 * session per app port, opened at the first request (writes wait in the socket until it
 * connects), replaced once it is retired (GOAWAY, reset budget, closed). A request the
 * app never processed (REFUSED_STREAM, above a GOAWAY's last stream id) and that has no
 * body is sent once more on the port's next session, as RFC 9113 section 8.7 allows.
 */
export class AppH2Client {
  private readonly sessions = new Map<number, H2ClientSession>();
  private closing = false;

  constructor(private readonly o: AppH2ClientOptions) {}

  request(port: number, req: ProxyRequest, headers: Headers): Promise<ProxyResponse> {
    const p = this.session(port).request(req, headers);
    if (req.body !== null) return p;
    return p.catch((err: unknown) => {
      if (!wasRefusedByApp(err) || req.signal.aborted || this.closing) throw err;
      return this.session(port).request(req, headers);
    });
  }

  private session(port: number): H2ClientSession {
    const known = this.sessions.get(port);
    if (known !== undefined && !known.retired) return known;
    if (this.closing) throw new ProxyError('DRAINING');
    const o = this.o;
    const socket = netConnect({ host: o.address, port, noDelay: true });
    const s = new H2ClientSession(socket, {
      streamWindowBytes: o.streamWindowBytes,
      connectionWindowBytes: o.connectionWindowBytes,
      maxHeaderListBytes: o.maxHeaderListBytes,
      resetBudget: o.resetBudget,
      onResetBudget: o.onResetBudget,
      onLimit: o.onLimit,
      onRetired: (r) => {
        if (this.sessions.get(port) === r) this.sessions.delete(port);
      },
    });
    this.sessions.set(port, s);
    const timer = o.clock.setTimeout(() => s.destroy(new ProxyError('CONNECT_TIMEOUT', `${o.address}:${port} after ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs);
    timer.unref?.();
    socket.once('connect', () => {
      o.clock.clearTimeout(timer);
      o.onConnection?.();
      this.keepalive(s);
    });
    socket.once('close', () => o.clock.clearTimeout(timer));
    return s;
  }

  /** HTTP/2 PING on an interval: an app that stops answering is found within interval + timeout. */
  private keepalive(s: H2ClientSession): void {
    const ka = this.o.keepalive;
    if (!ka || ka.intervalMs <= 0 || ka.timeoutMs <= 0) return;
    const clock = this.o.clock;
    let timer: Timer | null = null;
    const ping = (): void => {
      if (s.destroyed) return;
      const deadline = clock.setTimeout(() => {
        if (s.destroyed) return;
        this.o.onKeepaliveTimeout?.();
        this.o.logger.warn('the app did not answer a PING; closing its session', { code: 'APP_KEEPALIVE_TIMEOUT', timeoutMs: ka.timeoutMs });
        s.destroy(new ProxyError('UPSTREAM_RESET', 'the app did not answer a PING'));
      }, ka.timeoutMs);
      deadline.unref?.();
      s.ping(() => {
        clock.clearTimeout(deadline);
        timer = clock.setTimeout(ping, ka.intervalMs);
        timer.unref?.();
      });
    };
    timer = clock.setTimeout(ping, ka.intervalMs);
    timer.unref?.();
    s.socket.once('close', () => timer && clock.clearTimeout(timer));
  }

  /** GOAWAY to every session; streams in flight get `graceMs` to finish, then the sessions are destroyed. */
  close(graceMs = 1000): void {
    this.closing = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) s.retire();
    const t = this.o.clock.setTimeout(() => {
      for (const s of all) s.destroy();
    }, graceMs);
    t.unref?.();
  }
}
