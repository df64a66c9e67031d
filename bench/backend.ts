/**
 * Benchmark backends, run as their own process: an HTTP/1.1 server answering a 100-byte
 * body (the measurements; to a POST once its body has all come: the upload load),
 * or 1 MiB at /1m (the large-body load), a gRPC server (the test echo service) on h2c, and
 * a TCP echo server. Prints "ready H1PORT GRPCPORT TCPPORT".
 */
import { createServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const host = process.argv[2] ?? '127.0.0.1';
const body = Buffer.from('hello from the benchmark backend\n'.padEnd(99, '.') + '\n');
const large = Buffer.alloc(1024 * 1024, 'wren ');
const h1 = createServer((req, res) => {
  req.resume();
  const b = req.url === '/1m' ? large : body;
  const answer = () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': b.length });
    res.end(b);
  };
  // An upload (the large-body POST load) is answered once all of it has come, as an app that uses it would.
  if (req.method === 'POST') req.once('end', answer);
  else answer();
});
h1.keepAliveTimeout = 60_000;
await new Promise<void>((r) => h1.listen(0, host, () => r()));

const proto = fileURLToPath(new URL('../../test/fixtures/echo.proto', import.meta.url));
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: false, defaults: true })) as unknown as {
  wren: { test: { Echo: grpc.ServiceClientConstructor } };
};
const server = new grpc.Server();
server.addService(pkg.wren.test.Echo.service, {
  Unary: (call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { message: call.request.message }),
});
const grpcPort = await new Promise<number>((resolve, reject) =>
  server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
);
const tcp = createTcpServer((s) => s.pipe(s).on('error', () => s.destroy()));
await new Promise<void>((r) => tcp.listen(0, host, () => r()));
process.stdout.write(`ready ${(h1.address() as AddressInfo).port} ${grpcPort} ${(tcp.address() as AddressInfo).port}\n`);
