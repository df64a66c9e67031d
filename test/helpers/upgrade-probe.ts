import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';

/**
 * What a raw HTTP/1.1 upgrade (a WebSocket) of `path` to `host`, sent to `port`, gets back:
 * its status line and, when the proxy answered for itself, the wren-proxy-error label
 * (`HTTP/1.1 502 Bad Gateway upstream-protocol`); a line saying so when nothing came in `timeoutMs`.
 */
export function upgradeStatus(port: number, host: string, path = '/', timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let got = '';
    const t = setTimeout(() => (s.destroy(), resolve(`no answer in ${timeoutMs / 1000} s: ${JSON.stringify(got.slice(0, 200))}`)), timeoutMs);
    s.on('error', (e) => (clearTimeout(t), reject(e)));
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(t);
      s.destroy();
      const label = /\r\nwren-proxy-error: ([^\r]*)/i.exec(got.slice(0, end));
      resolve(`${got.slice(0, got.indexOf('\r\n'))}${label ? ` ${label[1]}` : ''}`);
    });
    s.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`);
  });
}

/**
 * An upgrade upstream that answers each request head with `interims(head)` interim (103)
 * responses, each in a write of its own, then the 101.
 */
export function interimUpgradeServer(interims: (head: string) => number): Server {
  return createNetServer((s: Socket) => {
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const n = interims(buf);
      buf = '';
      let i = 0;
      const next = (): void => {
        if (s.destroyed) return;
        if (i++ < n) return void s.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n', () => setImmediate(next));
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
      };
      next();
    });
  });
}
