import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The three active health-check probes (Envoy HealthCheck: http_health_check,
 * tcp_health_check, grpc_health_check). Each resolves true (healthy) or false and gives
 * up when `signal` aborts (the checker's timeout). Probes go in plaintext straight to the
 * endpoint's app port, like Envoy health checks without a transport socket match.
 */
export interface ProbeTarget {
  readonly address: string;
  readonly port: number;
}

/** HTTP: GET `path`; any 2xx is healthy. A fresh connection each time (no pooling). */
export function httpProbe(t: ProbeTarget, path: string, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ host: t.address, port: t.port, path, method: 'GET', agent: false, signal, headers: { 'user-agent': 'wren-health-check', connection: 'close' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve(code >= 200 && code < 300);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** TCP: healthy when a connection opens. */
export function tcpProbe(t: ProbeTarget, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: t.address, port: t.port });
    const done = (ok: boolean) => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(ok);
    };
    const onAbort = () => done(false);
    signal.addEventListener('abort', onAbort);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

type HealthClient = grpc.Client & {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): grpc.ClientUnaryCall;
};
let healthCtor: (new (addr: string, creds: grpc.ChannelCredentials) => HealthClient) | null = null;

/** The .proto sits beside this file in the repo; from dist/proxy/resilience it is three levels up. */
function protoPath(): string {
  const candidates = ['./health.proto', '../../../proxy/resilience/health.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`health.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

function healthClientCtor() {
  if (!healthCtor) {
    const def = protoLoader.loadSync(protoPath(), { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: typeof healthCtor } } } };
    healthCtor = pkg.grpc.health.v1.Health;
  }
  return healthCtor!;
}

/** A gRPC health client for one endpoint (kept across probes; close it when the endpoint goes). */
export function createGrpcHealthClient(t: ProbeTarget): HealthClient {
  const host = t.address.includes(':') ? `[${t.address}]` : t.address;
  const Ctor = healthClientCtor();
  return new Ctor(`${host}:${t.port}`, grpc.credentials.createInsecure());
}

/** gRPC: grpc.health.v1.Health/Check; healthy only on SERVING. `service` '' asks about the whole server. */
export function grpcProbe(client: HealthClient, service: string, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const call = client.Check({ service }, (err, res) => {
      signal.removeEventListener('abort', onAbort);
      resolve(!err && res?.status === 'SERVING');
    });
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort);
  });
}

export type { HealthClient };
