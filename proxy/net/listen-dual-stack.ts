import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import type { Logger } from '../../common/logger.js';
import { listen, type ListenOptions } from '../../common/listen.js';

/** Errors that mean "this host has no IPv6" (kernel without IPv6, or ::1 absent because IPv6 is disabled): the IPv4 socket serves alone. */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT']);

/**
 * Binds `server` on `host` (IPv4) and, when `ipv6Host` is set, a second socket on the
 * same port for IPv6 whose connections `server` handles: one net.Server owns one socket,
 * and the interception rules send each family to its own loopback or pod address
 * (REDIRECT maps to 127.0.0.1 / ::1 for the pod's own traffic, to the pod's address per
 * family inbound). Like Istio's dual-stack listeners (0.0.0.0 plus the additional
 * address [::]). The IPv6 socket is `ipv6Only`, so it never competes with the IPv4 one
 * for mapped addresses, and each connection keeps its own family's addresses (which
 * SO_ORIGINAL_DST vs IP6T_SO_ORIGINAL_DST, proxy/native, needs).
 *
 * A host without IPv6 keeps the IPv4 socket and logs IPV6_UNAVAILABLE once; any other
 * bind error (EADDRINUSE…) closes both and rejects. Closing `server` closes the IPv6
 * socket too (its close() is wrapped), so draining stops both families at once.
 */
export async function listenDualStack(server: Server, port: number, host: string, ipv6Host: string, logger: Logger, opts: ListenOptions = {}): Promise<AddressInfo> {
  const info = await listen(server, port, host, opts);
  if (!ipv6Host) return info;
  // Same socket options as the IPv4 server (allowHalfOpen: a client's FIN is relayed, not answered).
  const v6 = createServer({ noDelay: true, allowHalfOpen: (server as Server & { allowHalfOpen?: boolean }).allowHalfOpen === true }, (s) => server.emit('connection', s));
  v6.listen({ port: info.port, host: ipv6Host, ipv6Only: true, ...(opts.reusePort ? { reusePort: true } : {}) });
  try {
    await once(v6, 'listening');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (NO_IPV6.has(code)) {
      logger.warn('IPv6 unavailable on this host; listening on IPv4 only', { code: 'IPV6_UNAVAILABLE', address: `[${ipv6Host}]:${info.port}`, error: code });
      return info;
    }
    server.close();
    throw e;
  }
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => {
    v6.close();
    return close(cb);
  };
  return info;
}
