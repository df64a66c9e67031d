import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

/** Binds `server` and resolves with the bound address; rejects on a bind error (EADDRINUSE, EACCES…). */
export async function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  server.listen(port, host);
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
