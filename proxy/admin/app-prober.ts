import { isIP, connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { request as httpRequest } from '../../common/node-http.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { AppProbe, AppProbes } from '../../contract/app-probes.js';
import { createGrpcHealthClient, preloadGrpcHealth } from '../resilience/health-probes.js';

/**
 * Runs the app's own kubelet probes for the metrics port's `/app-health/...` paths (Istio's
 * pilot-agent status server, handleAppProbe): the injector rewrote each httpGet, tcpSocket
 * and grpc probe to ask the sidecar, which performs the original probe against the app and
 * answers with the result. So the probed port needs no hole in the inbound redirect: every
 * way into the app from outside the pod passes the sidecar's mTLS and authorization.
 *
 * Like kubelet (pkg/probe/{http,tcp,grpc}):
 *  - the target is the app's address (`app.address`: the pod IP in a cluster, what kubelet
 *    probes; Istio's default since REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION), so an app
 *    that binds only the pod IP passes and one that binds only 127.0.0.1 fails, as without
 *    a mesh. The sidecar's own UID is exempt from the outbound redirect (iptables-rules.ts
 *    proxy-uid; the pod IP also leaves via lo), so the probe reaches the app directly;
 *  - HTTP(S): GET with the probe's headers (they win over the defaults User-Agent and
 *    Accept), a fresh connection (`Connection: close`), TLS unverified as kubelet does;
 *    200-399 passes. A redirect is not followed (kubelet follows one to the same host);
 *  - TCP: passes when the connection opens;
 *  - gRPC: grpc.health.v1.Health/Check for the probe's service, passes on SERVING;
 *  - each bounded by the probe's timeoutSeconds (kubelet's default 1 s).
 *
 * Requests for one path while its probe runs share that run: whoever can reach the
 * metrics port cannot make the sidecar open more than one connection per configured probe.
 */
export type AppProbeResult = 'success' | 'failure' | 'timeout';

export interface AppProbeOutcome {
  readonly result: AppProbeResult;
  /** A short reason, what the metrics port answers with (`ok`, `HTTP 500`, `timed out after 1s`). */
  readonly reason: string;
}

export interface AppProberDeps {
  readonly probes: AppProbes;
  /** The app's address (config app.address). */
  readonly address: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Every run, for wren_app_probes_total{probe="<container>/<kind>", result}. */
  readonly onResult: (probe: string, result: AppProbeResult) => void;
}

const APP_HEALTH = '/app-health/';

export class AppProber {
  private readonly running = new Map<string, Promise<AppProbeOutcome>>();

  constructor(private readonly d: AppProberDeps) {
    // grpc-js takes a while to load (health-probes.ts loads it on first use): not within a probe's first second.
    if ([...d.probes.values()].some((p) => p.kind === 'grpc'))
      preloadGrpcHealth().catch((e: Error) => d.logger.warn('cannot load the gRPC health client', { code: 'APP_PROBE_GRPC_LOAD', error: e.message }));
  }

  has(path: string): boolean {
    return this.d.probes.has(path);
  }

  /** Runs the probe for `path` (one of has()), or joins the run in progress. */
  run(path: string): Promise<AppProbeOutcome> {
    const joined = this.running.get(path);
    if (joined) return joined;
    const probe = this.d.probes.get(path);
    if (!probe) return Promise.resolve({ result: 'failure', reason: `no probe ${path}` });
    const p = this.runOnce(path, probe).finally(() => this.running.delete(path));
    this.running.set(path, p);
    return p;
  }

  private async runOnce(path: string, probe: AppProbe): Promise<AppProbeOutcome> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = this.d.clock.setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, probe.timeoutMs);
    let failure: string | null;
    try {
      failure = await this.attempt(probe, ac.signal);
    } catch (e) {
      failure = (e as Error).message;
    } finally {
      this.d.clock.clearTimeout(timer);
    }
    const outcome: AppProbeOutcome = timedOut
      ? { result: 'timeout', reason: `timed out after ${probe.timeoutMs / 1000}s` }
      : failure === null ? { result: 'success', reason: 'ok' } : { result: 'failure', reason: failure };
    this.d.onResult(path.slice(APP_HEALTH.length), outcome.result);
    // Debug: failing probes are routine while an app starts, and kubelet records them as events.
    if (outcome.result !== 'success') this.d.logger.debug('app probe failed', { code: 'APP_PROBE_FAILED', probe: path, kind: probe.kind, port: probe.port, reason: outcome.reason });
    return outcome;
  }

  /** null when the probe passes, else why not. Resolves (never rejects) once `signal` aborts. */
  private attempt(probe: AppProbe, signal: AbortSignal): Promise<string | null> {
    const host = this.d.address;
    switch (probe.kind) {
      case 'http':
        return httpAttempt(host, probe, signal);
      case 'tcp':
        return tcpAttempt(host, probe.port, signal);
      case 'grpc': {
        const client = createGrpcHealthClient({ address: host, port: probe.port });
        return client.status(probe.service, signal).then(
          (status) => (status === 'SERVING' ? null : status),
          (e: Error) => e.message,
        ).finally(() => client.close());
      }
    }
  }
}

function httpAttempt(host: string, probe: Extract<AppProbe, { kind: 'http' }>, signal: AbortSignal): Promise<string | null> {
  const own = new Set(probe.headers.map((h) => h.name.toLowerCase()));
  // A raw header list keeps repeated names (kubelet sends each httpHeaders entry); Node adds no Host to one.
  const headers: string[] = [];
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${probe.port}`;
  for (const [name, value] of [['Host', authority], ['User-Agent', 'kube-probe/wren'], ['Accept', '*/*']] as const)
    if (!own.has(name.toLowerCase())) headers.push(name, value);
  for (const h of probe.headers) if (h.name.toLowerCase() !== 'connection') headers.push(h.name, h.value);
  headers.push('Connection', 'close');
  return new Promise((resolve) => {
    const req = httpRequest(
      {
        host, port: probe.port, path: probe.path, method: 'GET', signal, headers,
        // Our own connection and no agent (an `agent: false` request would ignore createConnection):
        // nothing pooled. kubelet's HTTPS probe skips certificate verification (InsecureSkipVerify).
        createConnection: () => probe.scheme === 'HTTPS'
          ? tlsConnect({ host, port: probe.port, rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }) })
          : netConnect({ host, port: probe.port }),
      },
      (res) => {
        const code = res.statusCode ?? 0;
        res.destroy();
        resolve(code >= 200 && code < 400 ? null : `HTTP ${code}`);
      },
    );
    req.on('error', (e) => resolve(signal.aborted ? 'aborted' : e.message));
    req.end();
  });
}

function tcpAttempt(host: string, port: number, signal: AbortSignal): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = netConnect({ host, port });
    const done = (failure: string | null) => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(failure);
    };
    const onAbort = () => done('aborted');
    signal.addEventListener('abort', onAbort);
    sock.once('connect', () => done(null));
    sock.once('error', (e) => done(e.message));
  });
}
