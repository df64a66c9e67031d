import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/** A TCP relay that forwards each connection to a port only after holding it `holdMs`. */
export interface HeldRelay {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A relay in front of a server sidecar's inbound port that connects each accepted connection
 * to it only after `holdMs`: the caller's mTLS handshake (its ClientHello waits in the paused
 * socket) takes that long, which is how a test makes a try wait for its connection.
 */
export async function heldRelay(targetPort: () => number, holdMs: number): Promise<HeldRelay> {
  const relayed = new Set<Socket>();
  const relay = createServer((down) => {
    relayed.add(down);
    down.on('error', () => undefined);
    down.on('close', () => relayed.delete(down));
    setTimeout(() => {
      if (down.destroyed) return;
      const up = connect(targetPort(), '127.0.0.1');
      relayed.add(up);
      up.on('error', () => down.destroy());
      up.on('close', () => {
        relayed.delete(up);
        down.destroy();
      });
      down.on('close', () => up.destroy());
      down.pipe(up).pipe(down);
    }, holdMs);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    port: (relay.address() as AddressInfo).port,
    close: async () => {
      for (const s of relayed) s.destroy();
      await new Promise<void>((r) => relay.close(() => r()));
    },
  };
}
