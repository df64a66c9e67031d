import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 where nothing listens: a connect to it is refused (ECONNREFUSED:
 * response flag UF), and a later listen on it (a server a test starts afterwards) succeeds.
 * Taken below the kernel's ephemeral range (net.ipv4.ip_local_port_range), where no
 * `listen(0)` lands: a port closed right after `listen(0)` can be handed to another test
 * file's server (or an outgoing connection's local end) a moment later, and the "refused"
 * endpoint then accepts and resets (UR instead of UF, seen in CI), or the later listen fails.
 */
export async function closedPort(): Promise<number> {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const top = Math.max(20_001, Number.isFinite(low) ? low : 32_768);
  for (let tries = 0; tries < 100; tries++) {
    const port = 20_000 + Math.floor(Math.random() * (top - 20_000));
    if (await free(port)) return port;
  }
  throw new Error('no free port below the ephemeral range on 127.0.0.1');
}

function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
