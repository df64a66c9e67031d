import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

export interface OriginalDst {
  readonly address: string;
  readonly port: number;
}

type Addon = {
  originalDst(fd: number): { address: string; port: number; family: number } | null;
  /** glibc malloc_trim(0) on a thread-pool thread; `done` gets whether memory was released (false off glibc). cli/heap-flags.ts. */
  mallocTrim(done?: (released: boolean) => void): void;
};

let addon: Addon | null | undefined;

/** Loads the SO_ORIGINAL_DST addon (proxy/native), or null when it was not built. */
export function loadAddon(): Addon | null {
  if (addon !== undefined) return addon;
  const require = createRequire(import.meta.url);
  for (const p of ['../native/build/original-dst.node', '../../proxy/native/build/original-dst.node', '../../../proxy/native/build/original-dst.node']) {
    try {
      addon = require(new URL(p, import.meta.url).pathname) as Addon;
      return addon;
    } catch {
      continue;
    }
  }
  addon = null;
  return addon;
}

/**
 * The destination the app dialled before iptables redirected it to us. Returns
 * undefined when the connection was not redirected (the original destination is the
 * listener itself) or the addon is unavailable.
 */
export function originalDst(socket: Socket): OriginalDst | undefined {
  const a = loadAddon();
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (!a || typeof fd !== 'number' || fd < 0) return undefined;
  const r = a.originalDst(fd);
  if (!r) return undefined;
  if (r.address === socket.localAddress?.replace(/^::ffff:/, '') && r.port === socket.localPort) return undefined;
  return { address: r.address, port: r.port };
}
