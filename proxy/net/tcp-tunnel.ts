import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/**
 * Splices two duplex streams with backpressure both ways, counting bytes. Half-close
 * is propagated (end on one side ends the other's writable side); an error or reset
 * on either side destroys both, so neither end hangs.
 */
export function splice(a: Socket | Duplex, b: Duplex, onDone?: (bytes: { aToB: number; bToA: number }) => void): void {
  const bytes = { aToB: 0, bToA: 0 };
  a.on('data', (d: Buffer) => (bytes.aToB += d.length));
  b.on('data', (d: Buffer) => (bytes.bToA += d.length));
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    onDone?.(bytes);
  };
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
    finish();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.pipe(b);
  b.pipe(a);
  let closed = 0;
  const onClose = () => {
    if (++closed === 2) finish();
    else setTimeout(() => (closed < 2 ? destroyBoth() : undefined), 30_000).unref();
  };
  a.on('close', onClose);
  b.on('close', onClose);
}
