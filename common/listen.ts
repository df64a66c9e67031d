import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

/** How a data-path socket binds: `reusePort` lets several worker threads bind one port (SO_REUSEPORT, proxy/workers). */
export interface ListenOptions {
  readonly reusePort?: boolean;
}

/** Binds `server` and resolves with the bound address; rejects on a bind error (EADDRINUSE, EACCES…). */
export async function listen(server: Server, port: number, host: string, opts: ListenOptions = {}): Promise<AddressInfo> {
  if (opts.reusePort) server.listen({ port, host, reusePort: true });
  else server.listen(port, host);
  await once(server, 'listening');
  return server.address() as AddressInfo;
}

/** A listener could not bind at start-up: names the listener, its address and port, and the system's reason. */
export class ListenError extends Error {
  constructor(
    readonly listener: string,
    readonly address: string,
    readonly port: number,
    cause: unknown,
  ) {
    const e = cause as NodeJS.ErrnoException;
    super(`cannot listen on ${address}:${port} (${listener} listener): ${e?.code ?? 'error'}: ${e?.message ?? String(cause)}`, { cause });
    this.name = 'ListenError';
  }
}
