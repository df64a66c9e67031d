import type { Socket } from 'node:net';
import { LiveSet } from '../../common/live-set.js';
import type { EgressPolicy } from './egress-policy.js';

/** A passthrough connection to a destination outside the mesh, with what egress control admitted it by. */
interface Passthrough {
  readonly socket: Socket;
  readonly address: string;
  readonly port: number;
  /** The TLS ClientHello's server name when it was read (REGISTRY_ONLY looks); undefined: not read. */
  readonly sni: string | undefined;
}

/** What is reported of a passthrough closed by an egress change. */
export interface EgressClosed {
  readonly dst: { readonly address: string; readonly port: number };
  readonly sni: string | undefined;
  readonly mode: string;
}

/**
 * The outbound side's per-connection authorization: egress control (REGISTRY_ONLY) lets a
 * connection to a destination outside the mesh through by its address or its SNI, once,
 * when it opens (outbound-listener.ts egress()). The same rule as the inbound's open
 * tunnels (policy/open-tunnels.ts, after istio/ztunnel#772): when the egress settings
 * change, every passthrough open is judged again with what it was admitted by, and the
 * ones the new settings refuse are closed at once, both sides. Plain HTTP to external
 * hosts needs nothing: each request is matched by its Host (egress-http.ts).
 *
 * A connection let through under ALLOW_ANY was not looked into, so its SNI is unknown: it
 * is judged by its address alone and, refused, closed (fail closed, as a new connection
 * whose ClientHello names no declared host would be). The app's reconnect is judged in
 * full (detection, SNI), so a TLS connection to a host an ExternalService declares comes
 * back; the cost is one reconnect when ALLOW_ANY turns REGISTRY_ONLY.
 */
export class OpenPassthroughs {
  private readonly open = new LiveSet<Passthrough>();

  constructor(private readonly onClosed: (c: EgressClosed) => void) {}

  add(socket: Socket, dst: { readonly address: string; readonly port: number }, sni: string | undefined): void {
    const entry = this.open.add({ socket, address: dst.address, port: dst.port, sni });
    socket.once('close', () => this.open.delete(entry));
  }

  /** New egress settings are in force: the passthroughs they no longer let through are closed. */
  egressChanged(p: EgressPolicy): void {
    if (p.mode === 'ALLOW_ANY') return;
    for (const c of this.open.values()) {
      if ((c.sni !== undefined && p.bySni(c.sni, c.port)) || p.byAddress(c.address, c.port)) continue;
      this.onClosed({ dst: { address: c.address, port: c.port }, sni: c.sni, mode: p.mode });
      // With an error: the splice (net/tcp-tunnel.ts) then destroys the upstream side at once too.
      c.socket.on('error', ignore);
      c.socket.destroy(new Error('egress refused after a policy change'));
    }
  }
}

const ignore = (): void => undefined;
