import { createServer, type Server } from 'node:net';

/**
 * A keep-alive HTTP/1.1 app on loopback port 0 that answers every request head with 5
 * bytes (`hello`), parsing nothing but the head's end: no objects of its own per request
 * beyond a string, so what a test counts in this process is the proxies'.
 */
export function bytesApp(): Promise<Server> {
  const s = createServer((sock) => {
    let pending = '';
    sock.on('data', (d) => {
      pending += d.toString('latin1');
      let at: number;
      while ((at = pending.indexOf('\r\n\r\n')) >= 0) {
        pending = pending.slice(at + 4);
        sock.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello');
      }
    });
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}
