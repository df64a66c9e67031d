import type { Clock } from '../../common/clock.js';
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
  /** wren_egress_tls_pools_retired_total{reason}: a TLS origination pool closed (prune(), or over MAX_TLS_POOLS). */
  readonly onTlsPoolRetired?: (reason: 'policy' | 'limit') => void;
  /** The pools' time (idle connections' timers); default the system clock. */
  readonly clock?: Clock;
  /**
   * A destination broke a per-request limit (more 1xx than MAX_INTERIM_RESPONSES, on a
   * pooled request or an upgrade): wren_limit_exceeded_total{direction="outbound"}, as
   * the outbound's other upstreams count it.
   */
  readonly onLimit?: (limit: 'interim-responses') => void;
}

/**
 * TLS origination pools kept at once. There is one per server name and CA, and a wildcard
 * host (`*.example.com`) without a fixed `tls.sni` verifies each host under its own name, so
 * an app calling many hosts would otherwise open pools without end; the one used least
 * recently is retired.
 */
export const MAX_TLS_POOLS = 128;

interface TlsPool {
  readonly connector: H1Connector;
  readonly pool: H1Pool;
  /** The ExternalTls settings it was made for: `sni` and CA (prune() keeps those still declared). */
  readonly settings: string;
}

const settingsOf = (t: ExternalTls): string => `${t.sni}\n${t.caCertificates}`;

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
 * server name and CA, at most MAX_TLS_POOLS, retired when the settings that made them go).
 */
export function egressHttp(d: EgressHttpDeps): { readonly layer: HttpLayer; prune(): void; destroy(): void } {
  const plainPool = new H1Pool({ connectTimeoutMs: d.connectTimeoutMs, maxHeaderBytes: d.maxHeaderBytes, clock: d.clock, onLimit: d.onLimit });
  const plain = new H1Connector(plainPool);
  /** By server name and settings, oldest first. */
  const secure = new Map<string, TlsPool>();
  /** No new request on its connections: idle ones close now, busy ones when their exchange ends (H1Pool.retire). */
  const retire = (key: string, e: TlsPool, reason: 'policy' | 'limit'): void => {
    secure.delete(key);
    e.pool.retire();
    d.onTlsPoolRetired?.(reason);
  };
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
    const settings = settingsOf(t);
    const key = `${servername}\n${settings}`;
    const hit = secure.get(key);
    if (hit) {
      // Last used last: the limit retires the pool used least recently.
      secure.delete(key);
      secure.set(key, hit);
      return hit.connector;
    }
    if (secure.size >= MAX_TLS_POOLS) {
      const [oldest, e] = secure.entries().next().value!;
      retire(oldest, e, 'limit');
    }
    const opts: ConnectionOptions = { servername, ALPNProtocols: ['http/1.1'], ...(t.caCertificates ? { ca: t.caCertificates } : {}) };
    const connect = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket =>
      tlsConnect({ ...opts, host, port, ...(onread ? { onread } : {}) } as ConnectionOptions);
    const pool = new H1Pool({ connect, secure: true, connectTimeoutMs: d.connectTimeoutMs, maxHeaderBytes: d.maxHeaderBytes, clock: d.clock, onLimit: d.onLimit });
    const connector = new H1Connector(pool);
    secure.set(key, { connector, pool, settings });
    return connector;
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
    // Declared: the metrics and the access log name the ExternalService host, not PassthroughCluster.
    if (match) req.external = match;
    const tls = match?.port.tls;
    if (req.upgrade !== undefined) {
      // An upgrade (WebSocket) becomes a tunnel on a connection of its own: plain only.
      if (tls) return Promise.reject(new ProxyError('NOT_IMPLEMENTED', 'an HTTP upgrade to an ExternalService with TLS origination'));
      return upgradeH1(dst.address, dst.port, req, req.headers, { maxHeaderBytes: d.maxHeaderBytes, connectTimeoutMs: d.connectTimeoutMs, onLimit: d.onLimit });
    }
    const ep = tls ? endpoint(dst.address, tls.port) : endpoint(dst.address, dst.port);
    // The access log's upstream_host: where it went, as Envoy logs its PassthroughCluster's and a ServiceEntry cluster's host.
    req.endpoint = ep;
    const up = tls ? tlsConnector(tls, tls.sni || host).ready(ep) : plain.ready(ep);
    return up.pool.request(up.address, up.port, req, req.headers, undefined, d.connectTimeoutMs);
  };

  return {
    layer: (inner) => (req) => (req.origDst?.egress === true ? send(req) : inner(req)),
    /**
     * The egress settings changed: the TLS origination pools whose settings (`sni`, CA) no
     * ExternalService declares any more are retired, as Envoy drains the connection pools
     * of a cluster that CDS changed or removed. A CA rotated out no longer verifies new
     * connections' servers, and a pool no request can reach does not hold its sockets.
     */
    prune: () => {
      const declared = new Set<string>();
      for (const svc of d.policy().services) for (const port of svc.ports) if (port.tls) declared.add(settingsOf(port.tls));
      for (const [key, e] of [...secure]) if (!declared.has(e.settings)) retire(key, e, 'policy');
    },
    destroy: () => {
      plainPool.destroy();
      for (const e of secure.values()) e.pool.destroy();
      secure.clear();
    },
  };
}
