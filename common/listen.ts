import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

/** Binds `server` and resolves with the bound address; rejects on a bind error (EADDRINUSE, EACCES…). */
export async function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  server.listen(port, host);
  await once(server, 'listening');
  return server.address() as AddressInfo;
}
