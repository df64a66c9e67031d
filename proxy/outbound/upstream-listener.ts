import { createServer, type AddressInfo, type Server } from 'node:net';
import { listen, type ListenOptions } from '../../common/listen.js';
import type { UpstreamConfig } from '../config/proxy-config.js';
import type { OutboundListener } from './outbound-listener.js';
import type { Destination } from './route-table.js';

/**
 * One explicit upstream (Consul's `upstreams`: a local port bound to one service): every
 * connection accepted here is handed to the outbound listener as if its original
 * destination were the upstream's service port. There is no second data path: protocol
 * detection, routing, balancing, mTLS, retries and metrics are the redirected path's.
 */
export class UpstreamListener {
  private readonly server: Server;
  private readonly dst: Destination;

  constructor(
    readonly config: UpstreamConfig,
    outbound: OutboundListener,
  ) {
    this.dst = Object.freeze({ address: config.localAddress, port: config.port, upstream: `${config.service}:${config.port}` });
    // allowHalfOpen as on the outbound listener: a client's FIN is relayed, not answered with ours.
    this.server = createServer({ noDelay: true, allowHalfOpen: true }, (s) => void outbound.acceptUpstream(s, this.dst, config.protocol));
  }

  /** Rejects when the address cannot be bound (EADDRINUSE, EADDRNOTAVAIL, EACCES): start-up fails (Proxy.start names it). */
  listen(opts: ListenOptions = {}): Promise<AddressInfo> {
    return listen(this.server, this.config.localPort, this.config.localAddress, opts);
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting; open connections belong to the outbound listener, which drops them on close. */
  close(): Promise<void> {
    return new Promise((r) => (this.server.listening ? this.server.close(() => r()) : r()));
  }
}
