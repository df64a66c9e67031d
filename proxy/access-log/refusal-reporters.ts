import type { ProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest } from '../http/exchange.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { AccessLog } from './access-log.js';

type Refusal = (e: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst']) => void;

/**
 * What a listener's servers call for a request they refused before its layers (the
 * HTTP/1.1 codec's 400/431/501, the HTTP/2 servers' 400/431 and malformed streams, the 408
 * request-headers timeout): counted in wren_proxy_errors_total{direction,code} and logged
 * with AccessLog.refused(), the same on each listener. The 408 is counted by onLimit
 * (request-headers-timeout), so it is only logged; with no access log there is nothing to do.
 */
export function refusalReporters(direction: 'inbound' | 'outbound', metrics: ProxyMetrics, log: AccessLog | undefined): {
  readonly h1: Refusal;
  readonly h2: (e: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], status?: number) => void;
  readonly headersTimeout: Refusal | undefined;
} {
  return {
    h1: (e, source, origDst) => {
      metrics.proxyErrors.inc({ direction, code: e.label });
      log?.refused(e, source, origDst);
    },
    h2: (e, source, origDst, status) => {
      metrics.proxyErrors.inc({ direction, code: e.label });
      log?.refused(e, source, origDst, 'HTTP/2', status);
    },
    headersTimeout: log ? (e, source, origDst) => log.refused(e, source, origDst) : undefined,
  };
}
