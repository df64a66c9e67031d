import { existsSync } from 'node:fs';
import { NO_ENV_PROXY } from '../../common/grpc-env-proxy.js';
import { request as httpRequest } from '../../common/node-http.js';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/**
 * The three active health-check probes (Envoy HealthCheck: http_health_check,
 * tcp_health_check, grpc_health_check). Each resolves true (healthy) or false and gives
 * up when `signal` aborts (the checker's timeout). These go in plaintext straight to the
 * app port and are used for unmeshed endpoints only; a meshed endpoint is probed through
 * its sidecar over mTLS (mesh-probes.ts), since under STRICT mTLS a plaintext probe would
 * be redirected to the sidecar's inbound port and refused.
 */
export interface ProbeTarget {
  readonly address: string;
  readonly port: number;
}

/** HTTP: GET `path`; any 2xx is healthy. A fresh connection each time (no pooling). */
export function httpProbe(t: ProbeTarget, path: string, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: t.address, port: t.port, path, method: 'GET', agent: false, signal, headers: { 'user-agent': 'wren-health-check', connection: 'close' } }, (res) => {
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

type GrpcModule = typeof import('@grpc/grpc-js');
type HealthStub = import('@grpc/grpc-js').Client & {
  Check(req: { service: string }, cb: (err: import('@grpc/grpc-js').ServiceError | null, res?: { status: string }) => void): import('@grpc/grpc-js').ClientUnaryCall;
};
type HealthStubCtor = new (addr: string, creds: import('@grpc/grpc-js').ChannelCredentials, options: import('@grpc/grpc-js').ChannelOptions) => HealthStub;

/** The .proto sits beside this file in the repo; from dist/proxy/resilience it is three levels up. */
function protoPath(): string {
  const candidates = ['./health.proto', '../../../proxy/resilience/health.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`health.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

let loading: Promise<{ grpc: GrpcModule; Health: HealthStubCtor }> | null = null;

/**
 * grpc-js and proto-loader are loaded on the first gRPC health check, not with the
 * proxy: a sidecar without gRPC health checks never pays their start-up time and
 * memory (about 17 MB of RSS).
 */
function loadHealth(): Promise<{ grpc: GrpcModule; Health: HealthStubCtor }> {
  loading ??= Promise.all([import('@grpc/grpc-js'), import('@grpc/proto-loader')]).then(([grpc, protoLoader]) => {
    const def = protoLoader.loadSync(protoPath(), { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: HealthStubCtor } } } };
    return { grpc, Health: pkg.grpc.health.v1.Health };
  });
  return loading;
}

/** Loads grpc-js and the health service now, so that a first check is not charged for it (app probes, app-prober.ts). */
export function preloadGrpcHealth(): Promise<void> {
  return loadHealth().then(() => undefined);
}

/** A gRPC health client for one endpoint (kept across probes; close it when the endpoint goes). */
export class HealthClient {
  private stub: HealthStub | null = null;
  private closed = false;

  constructor(private readonly target: ProbeTarget) {}

  async check(service: string, signal: AbortSignal): Promise<boolean> {
    return (await this.status(service, signal)) === 'SERVING';
  }

  /**
   * The HealthCheckResponse status (`SERVING`, `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN`)
   * or why there is none (`grpc status 14 ...`, `cancelled`): the app probes report it.
   */
  async status(service: string, signal: AbortSignal): Promise<string> {
    const { grpc, Health } = await loadHealth();
    if (this.closed || signal.aborted) return 'cancelled';
    const host = this.target.address.includes(':') ? `[${this.target.address}]` : this.target.address;
    // A probe goes to the endpoint (or the app) itself, never through an environment's proxy
    // (common/grpc-env-proxy.ts; Envoy's health checks read no proxy from the environment either).
    this.stub ??= new Health(`${host}:${this.target.port}`, grpc.credentials.createInsecure(), NO_ENV_PROXY);
    const stub = this.stub;
    return new Promise((resolve) => {
      const call = stub.Check({ service }, (err, res) => {
        signal.removeEventListener('abort', onAbort);
        resolve(err ? `grpc status ${err.code} ${err.details}` : String(res?.status ?? 'UNKNOWN'));
      });
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort);
    });
  }

  close(): void {
    this.closed = true;
    this.stub?.close();
  }
}

export function createGrpcHealthClient(t: ProbeTarget): HealthClient {
  return new HealthClient(t);
}

/** gRPC: grpc.health.v1.Health/Check; healthy only on SERVING. `service` '' asks about the whole server. */
export function grpcProbe(client: HealthClient, service: string, signal: AbortSignal): Promise<boolean> {
  return client.check(service, signal);
}
