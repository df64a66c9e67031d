import { connect } from 'node:net';

/**
 * Writes `bytes` as they are on a plain TCP connection to 127.0.0.1:`port` and resolves
 * with what came back once a response head has arrived (the blank line), the peer closed,
 * or `timeoutMs` passed: for requests no HTTP client library would send.
 */
export function rawHead(port: number, bytes: string, timeoutMs = 4000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (/\r\n\r\n/.test(out)) s.end();
    });
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), timeoutMs);
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.write(bytes);
  });
}

/** The status line of what rawHead gave back ('' when nothing came). */
export function statusLine(raw: string): string {
  const end = raw.indexOf('\r\n');
  return end < 0 ? raw : raw.slice(0, end);
}
