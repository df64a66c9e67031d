import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2cServer } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { randomInt } from 'node:crypto';
import { parseService } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import type { Proxy } from '../../proxy/proxy.js';
import type { TestPki } from './pki.js';
import { startProxy } from './proxy.js';

/**
 * Pods of one StatefulSet on loopback: pod i has its own address (127.N.1.i; N random per
 * run so parallel runs do not share addresses), an HTTP app and a TCP app on that
 * address (the same ports on every pod, as in a StatefulSet) and its own sidecar whose
 * inbound listener and app address are that address.
 *
 * The HTTP app (HTTP/1.1 on httpPort, h2c on h2Port) answers every request with JSON
 * {pod, path, xfcc, attempt} (`/status/N` with that status) and an HTTP/1.1 upgrade with
 * 101 and `x-pod`; the TCP app greets with `<pod>\n` and then echoes.
 */
export interface LoopbackPod {
  readonly name: string;
  readonly ip: string;
  readonly sidecar: Proxy;
  readonly httpHits: { count: number };
  readonly tcpHits: { count: number };
}

export interface LoopbackPods {
  readonly pods: readonly LoopbackPod[];
  readonly httpPort: number;
  /** The same app over HTTP/2 cleartext (prior knowledge). */
  readonly h2Port: number;
  readonly tcpPort: number;
  /** A source address in the same random /16, for clients that must be told apart by source. */
  clientIp(i: number): string;
  /** The headless Service (no ClusterIP) over the pods: `http`, `h2` (detect) and `tcp` (opaque) ports. */
  service(name: string, policy?: Record<string, unknown>): Service;
  close(): Promise<void>;
}

export async function startLoopbackPods(pki: TestPki, o: { readonly count: number; readonly prefix: string; readonly serviceAccount: string }): Promise<LoopbackPods> {
  const net = randomInt(1, 250);
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const bind = async (s: Server, ip: string, port: number): Promise<number> => {
    s.on('connection', (c: Socket) => {
      sockets.add(c);
      c.on('close', () => sockets.delete(c));
    });
    s.listen(port, ip);
    await once(s, 'listening');
    servers.push(s);
    return (s.address() as AddressInfo).port;
  };
  let httpPort = 0;
  let h2Port = 0;
  let tcpPort = 0;
  const pods: LoopbackPod[] = [];
  for (let i = 1; i <= o.count; i++) {
    const name = `${o.prefix}-${i - 1}`;
    const ip = `127.${net}.1.${i}`;
    const httpHits = { count: 0 };
    const tcpHits = { count: 0 };
    const answer = (req: IncomingMessage, res: ServerResponse) => {
      httpHits.count++;
      req.resume();
      req.on('end', () => {
        const m = /^\/status\/(\d+)$/.exec(req.url ?? '');
        res.writeHead(m ? Number(m[1]) : 200, { 'content-type': 'application/json', 'x-pod': name });
        res.end(JSON.stringify({ pod: name, path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null, attempt: req.headers['wren-attempt'] ?? null }));
      });
    };
    const h1 = createHttpServer(answer);
    // An HTTP/1.1 upgrade (WebSocket-style): 101 naming the pod, then an echo.
    h1.on('upgrade', (req: IncomingMessage, sock: Socket, head: Buffer) => {
      httpHits.count++;
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: Upgrade\r\nx-pod: ${name}\r\n\r\n`);
      if (head.length) sock.write(head);
      sock.pipe(sock);
    });
    httpPort = await bind(h1, ip, httpPort);
    h2Port = await bind(createH2cServer(answer as never) as unknown as Server, ip, h2Port);
    const tcp = createNetServer((s) => {
      tcpHits.count++;
      s.write(`${name}\n`);
      s.pipe(s);
    });
    tcpPort = await bind(tcp, ip, tcpPort);
    const sidecar = await startProxy({
      pki,
      serviceAccount: o.serviceAccount,
      config: {
        listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: ip, port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
        app: { address: ip },
      },
    });
    pods.push({ name, ip, sidecar, httpHits, tcpHits });
  }
  const endpoints = (port: number) => pods.map((p) => ({ address: p.ip, port, proxyPort: p.sidecar.inboundPort, identity: p.sidecar.tls.spiffeId }));
  return {
    pods,
    httpPort,
    h2Port,
    tcpPort,
    clientIp: (i) => `127.${net}.2.${i}`,
    service: (name, policy) =>
      parseService(
        {
          name,
          namespace: 'default',
          ...(policy ? { policy } : {}),
          clusterIPs: [],
          ports: [
            { name: 'http', port: httpPort, protocol: 'detect', endpoints: endpoints(httpPort) },
            { name: 'h2', port: h2Port, protocol: 'detect', endpoints: endpoints(h2Port) },
            { name: 'tcp', port: tcpPort, protocol: 'opaque', endpoints: endpoints(tcpPort) },
          ],
        },
        'test',
      ),
    async close() {
      await Promise.all(pods.map((p) => p.sidecar.close()));
      for (const c of sockets) c.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}
