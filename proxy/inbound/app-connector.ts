import type { Agent } from 'node:http';
import type { Endpoint } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { H1Pool } from '../http/h1-pool.js';
import type { AppH2Client } from '../h2/app-h2-client.js';
import { H1Connector, SessionConnector, TcpConnector, type SessionPool } from '../net/connector.js';

/**
 * How long a connection to the local app may take to open: the app session pool's own
 * default (proxy.ts). Loopback connects succeed or are refused at once; this bounds a
 * wedged app whose accept queue is full.
 */
export const APP_CONNECT_TIMEOUT_MS = 1000;

/**
 * The local app as the inbound side reaches it, through the same connectors as the
 * outbound side reaches its peers (proxy/net/connector.ts): an h2c session per port
 * (`sessions`, the app session pool), HTTP/1.1 keep-alive connections (`h1`, the pool on
 * the app agent) and a TCP socket per opaque connection (`tcp`). The app's endpoint per
 * port is made once, so a request allocates none.
 */
export class AppConnector {
  readonly h2: SessionConnector;
  readonly h1: H1Connector;
  readonly tcp: TcpConnector;
  /** HTTP/2 to the app on the frame-level client (protocol.appHttp2 'frames'); absent: node:http2 sessions (`h2`). */
  readonly frames: AppH2Client | undefined;
  private readonly endpoints = new Map<number, Endpoint>();

  constructor(
    readonly address: string,
    sessions: SessionPool,
    agent: Agent,
    clock: Clock,
    frames?: AppH2Client,
    readonly onLimit?: (limit: 'interim-responses') => void,
  ) {
    this.frames = frames;
    this.h2 = new SessionConnector(sessions);
    const pool = H1Pool.of(agent, onLimit);
    pool.fromApp = true;
    this.h1 = new H1Connector(pool);
    this.tcp = new TcpConnector({ clock });
  }

  endpoint(port: number): Endpoint {
    let ep = this.endpoints.get(port);
    if (!ep) this.endpoints.set(port, (ep = Object.freeze({ address: this.address, port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true })));
    return ep;
  }
}
