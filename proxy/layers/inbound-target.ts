import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';
import { ProxyError } from '../errors/proxy-error.js';
import { parseTargetPort } from '../inbound/target-port.js';

/**
 * Inbound: which local port the request is for (set by the calling sidecar), falling
 * back to the original destination of an iptables-redirected connection.
 */
export const inboundTarget =
  (reserved: ReadonlySet<number>): HttpLayer =>
  (inner) =>
  (req) => {
    const raw = req.headers[MESH.targetPort] ?? (req.origDst ? String(req.origDst.port) : undefined);
    const port = parseTargetPort(raw, reserved);
    if (port instanceof Error) throw new ProxyError('BAD_REQUEST', port.message);
    req.targetPort = port;
    return inner(req);
  };
