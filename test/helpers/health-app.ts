import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { listenOnLoopback } from './fake-app.js';

/**
 * An HTTP/1.1 app whose health endpoint can be flipped: GET /healthz answers 200 while
 * `healthy`, 503 otherwise, and records the headers of every probe; any other path
 * answers 200 with the app's name and counts as user traffic.
 */
export interface HealthApp {
  readonly port: number;
  readonly name: string;
  healthy: boolean;
  readonly probes: IncomingHttpHeaders[];
  userHits: number;
  close(): Promise<void>;
}

export async function healthApp(name: string): Promise<HealthApp> {
  const app = { name, healthy: true, probes: [] as IncomingHttpHeaders[], userHits: 0 } as HealthApp & { port: number; close(): Promise<void> };
  const server = createServer((req, res) => {
    req.resume();
    if (req.url === '/healthz') {
      app.probes.push(req.headers);
      res.writeHead(app.healthy ? 200 : 503).end(app.healthy ? 'ok' : 'unhealthy');
      return;
    }
    app.userHits++;
    res.writeHead(200, { 'x-app': name }).end(name);
  });
  const { port, close } = await listenOnLoopback(server);
  app.port = port;
  app.close = close;
  return app;
}

/** A gRPC (h2c) app serving grpc.health.v1.Health/Check with a status that can be flipped; records the caller header. */
export interface GrpcHealthApp {
  readonly port: number;
  status: 'SERVING' | 'NOT_SERVING';
  readonly checks: { service: string; xfcc: string }[];
  close(): Promise<void>;
}

export async function grpcHealthApp(): Promise<GrpcHealthApp> {
  const proto = fileURLToPath(new URL('../../proxy/resilience/health.proto', import.meta.url));
  const def = protoLoader.loadSync(proto, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } } };
  const server = new grpc.Server();
  const app = { status: 'SERVING', checks: [] } as unknown as GrpcHealthApp & { port: number; close(): Promise<void> };
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      app.checks.push({ service: call.request.service, xfcc: String(call.metadata.get('x-forwarded-client-cert')[0] ?? '') });
      cb(null, { status: app.status });
    },
  });
  app.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  app.close = () => new Promise<void>((r) => server.tryShutdown(() => r()));
  return app;
}

/** A raw TCP app that accepts and closes connections, counting them; `close()` stops listening (connections are then refused). */
export async function tcpHealthApp(): Promise<{ readonly port: number; accepted: number; close(): Promise<void> }> {
  const app = { accepted: 0 } as { port: number; accepted: number; close(): Promise<void> };
  const server = createNetServer((s) => {
    app.accepted++;
    s.destroy();
  });
  const { port, close } = await listenOnLoopback(server);
  app.port = port;
  app.close = close;
  return app;
}

/**
 * Stands in for a pod's iptables inbound REDIRECT: everything sent to the pod's address
 * on `appPort` lands on its sidecar's inbound port, so the app is reachable from
 * outside the pod only through the sidecar (and a plaintext client meets STRICT mTLS).
 */
export async function podRedirect(podAddress: string, appPort: number, sidecarInboundPort: number): Promise<{ accepted: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const r = { accepted: 0 } as { accepted: number; close(): Promise<void> };
  const server: Server = createNetServer((down) => {
    r.accepted++;
    const up = netConnect({ host: podAddress, port: sidecarInboundPort });
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    down.pipe(up).pipe(down);
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(appPort, podAddress, () => resolve());
  });
  r.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  return r;
}
