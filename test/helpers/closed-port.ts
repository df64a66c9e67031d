import { createServer, type AddressInfo } from 'node:net';

/** A loopback port nothing listens on now (bound on port 0, then closed): a connect to it is refused, a listen on it usually succeeds. */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
