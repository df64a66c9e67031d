/**
 * The peer to beat: the same two hops written the obvious way with node:http/https and
 * keep-alive agents. `outbound PORT UPSTREAM_PORT` forwards plaintext HTTP/1.1 to the
 * inbound over TLS (client certificate); `inbound PORT APP_PORT` terminates TLS and
 * forwards to the app. Prints "ready PORT".
 */
import { createServer, request, Agent } from 'node:http';
import { createServer as createTlsServer, request as tlsRequest, Agent as TlsAgent } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

const [role, upstreamPortArg, certFile, keyFile, caFile] = process.argv.slice(2);
const upstreamPort = Number(upstreamPortArg);
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: readFileSync(caFile) };

if (role === 'outbound') {
  const agent = new TlsAgent({ keepAlive: true, maxSockets: 256, ...tls, rejectUnauthorized: true, checkServerIdentity: () => undefined });
  const server = createServer((req, res) => {
    const up = tlsRequest({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`));
} else {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const up = request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`));
}
