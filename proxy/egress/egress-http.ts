import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { OnReadOpts, Socket } from 'node:net';
import type { Endpoint } from '../../contract/model.js';
import type { ExternalTls } from '../../contract/egress.js';
import type { HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { H1Pool } from '../http/h1-pool.js';
import { H1Connector } from '../net/connector.js';
import { upgradeH1 } from '../http/h1-upgrade.js';
import { ProxyError } from '../errors/proxy-error.js';
import { splitAuthority } from '../outbound/route-table.js';
import type { EgressPolicy } from './egress-policy.js';

export interface EgressHttpDeps {
  readonly policy: () => EgressPolicy;
  /** wren_egress_refused_total{protocol="http"}. */
  readonly onRefused: () => void;
  /** Connect timeout of a connection to an external host (config egress.connectTimeoutMs). */
  readonly connectTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

/** Endpoints are cached per address:port so the connectors' per-endpoint upstream cache holds. */
const MAX_ENDPOINTS = 1024;

/**
 * HTTP requests on a connection egress control let through (outbound-listener.ts marks its
 * destination `egress`): they do not enter the mesh's routing, whatever their Host says
 * (the app dialled an address the mesh does not know). Each request is matched by its Host
 * and the connection's port against the ExternalServices' HTTP ports:
 *
 *  - declared, plain: forwarded to the original destination as HTTP/1.1;
 *  - declared with `tls` (origination, Istio's DestinationRule tls.mode SIMPLE on a
 *    ServiceEntry host): forwarded over TLS to the original destination's address on
 *    `tls.port`, with SNI `tls.sni` (default: the Host) and the server's certificate
 *    verified for that name against `tls.caCertificates` (default: the system roots);
 *  - not declared: REGISTRY_ONLY refuses it (502 egress-refused, flag NR); ALLOW_ANY
 *    forwards it to the original destination, as the TCP passthrough would have.
 *
 * Resolution is Istio's `resolution: NONE`: the address is the one the app resolved and
 * dialled, so the sidecar needs no DNS. Both ways go through the connector abstraction
 * (H1Connector over an HTTP/1.1 keep-alive pool: one plain pool, one TLS pool per
 * distinct sni/CA pair).
 */
export function egressHttp(d: EgressHttpDeps): { readonly layer: HttpLayer; destroy(): void } {
  const pools: H1Pool[] = [new H1Pool({ connectTimeoutMs: d.connectTimeoutMs, maxHeaderBytes: d.maxHeaderBytes })];
  const plain = new H1Connector(pools[0]);
  const secure = new Map<string, H1Connector>();
  const endpoints = new Map<string, Endpoint>();
  const endpoint = (address: string, port: number): Endpoint => {
    const key = `${address}|${port}`;
    let ep = endpoints.get(key);
    if (!ep) {
      if (endpoints.size >= MAX_ENDPOINTS) endpoints.clear();
      endpoints.set(key, (ep = Object.freeze({ address, port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true })));
    }
    return ep;
  };
  const tlsConnector = (t: ExternalTls, servername: string): H1Connector => {
    const key = `${servername}\n${t.caCertificates}`;
    let c = secure.get(key);
    if (!c) {
      const opts: ConnectionOptions = { servername, ALPNProtocols: ['http/1.1'], ...(t.caCertificates ? { ca: t.caCertificates } : {}) };
      const connect = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket =>
        tlsConnect({ ...opts, host, port, ...(onread ? { onread } : {}) } as ConnectionOptions);
      const pool = new H1Pool({ connect, secure: true, connectTimeoutMs: d.connectTimeoutMs, maxHeaderBytes: d.maxHeaderBytes });
      pools.push(pool);
      secure.set(key, (c = new H1Connector(pool)));
    }
    return c;
  };

  const send = (req: ProxyRequest): Promise<ProxyResponse> => {
    const dst = req.origDst!;
    const host = splitAuthority(req.authority).host.toLowerCase().replace(/\.$/, '');
    const p = d.policy();
    const match = host ? p.httpTarget(host, dst.port) : undefined;
    if (!match && p.mode === 'REGISTRY_ONLY') {
      d.onRefused();
      return Promise.reject(new ProxyError('EGRESS_REFUSED', `${host || '(no host)'}:${dst.port}`));
    }
    const tls = match?.port.tls;
    if (req.upgrade !== undefined) {
      // An upgrade (WebSocket) becomes a tunnel on a connection of its own: plain only.
      if (tls) return Promise.reject(new ProxyError('NOT_IMPLEMENTED', 'an HTTP upgrade to an ExternalService with TLS origination'));
      return upgradeH1(dst.address, dst.port, req, req.headers, d.maxHeaderBytes);
    }
    const up = tls ? tlsConnector(tls, tls.sni || host).ready(endpoint(dst.address, tls.port)) : plain.ready(endpoint(dst.address, dst.port));
    return up.pool.request(up.address, up.port, req, req.headers, undefined, d.connectTimeoutMs);
  };

  return {
    layer: (inner) => (req) => (req.origDst?.egress === true ? send(req) : inner(req)),
    destroy: () => {
      for (const p of pools) p.destroy();
    },
  };
}
