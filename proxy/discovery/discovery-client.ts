import * as grpc from '@grpc/grpc-js';
import type { Clock, Random, Timer } from '../../common/clock.js';
import { NO_ENV_PROXY } from '../../common/grpc-env-proxy.js';
import type { Logger } from '../../common/logger.js';
import { WREN_VERSION } from '../../common/version.js';
import {
  loadDiscoveryProto, MAX_REPORTED_ENDPOINTS,
  type DiscoveryRequest, type DiscoveryResponse, type Ejection, type IdentityReport,
  type StatsReport, type TrustBundleState,
} from '../../contract/discovery.js';
import { parseTrustBundleState } from '../../contract/trust-anchors.js';
import { credentialsGeneration } from '../identity/control-plane-credentials.js';
import type { InboundPolicy, MeshSnapshot, PushedTelemetry, Service } from '../../contract/model.js';
import { applyEgress, applyInboundPolicy, applyResponse, applyTelemetry, ResyncError } from './apply-response.js';
import type { EgressSettings } from '../../contract/egress.js';

export interface DiscoveryClientOptions {
  /** host:port of the control plane's discovery endpoint. */
  readonly address: string;
  readonly identity: { readonly spiffeId: string; readonly namespace: string; readonly pod: string; readonly labels?: Readonly<Record<string, string>> };
  /** Service keys "name.namespace" to watch; empty or absent = all. */
  readonly services?: readonly string[];
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Insecure by default. From controlPlaneCredentials: mutual TLS, presenting the proxy's workload certificate once it has one. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Extra channel options (CONTROL_PLANE_CHANNEL_OPTIONS with TLS credentials). */
  readonly channelOptions?: grpc.ChannelOptions;
  /**
   * Called once per accepted version with the full rebuilt snapshot. Throwing NACKs it. A
   * promise (a proxy with listener workers: each applies it in its thread) holds the answer
   * until it settles: a rejection NACKs the version, as a throw does.
   */
  readonly apply: (snapshot: MeshSnapshot) => void | Promise<void>;
  /** Reconnect backoff: exponential from initialMs to maxMs, with jitter. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Called with the CA's trust state whenever an accepted response carries it (validated; a malformed one is NACKed). */
  readonly onTrustBundle?: (state: TrustBundleState) => void;
  /** Called with the number of entries a HealthReport left out (over MAX_REPORTED_ENDPOINTS). */
  readonly onHealthReportClipped?: (dropped: number) => void;
}

type Stream = grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/**
 * The proxy's side of wren.discovery.v1: subscribes, rebuilds the full MeshSnapshot
 * from the first snapshot plus increments, validates each response before it can
 * replace anything, ACKs or NACKs it, and reconnects with capped exponential backoff
 * with jitter.
 *
 * Static stability: losing the control plane never changes the config. The last good
 * snapshot stays in force until a new stream delivers a valid replacement; `apply` is
 * never called with an empty config because of a disconnect.
 */
export class DiscoveryClient {
  private client: grpc.Client | null = null;
  /** credentialsGeneration when `client` was made: it presents that certificate. */
  private clientGeneration = -1;
  private stream: Stream | null = null;
  private timer: Timer | null = null;
  private attempt = 0;
  private running = false;
  private isConnected = false;
  private view: ReadonlyMap<string, Service> | null = null;
  private snapshot: MeshSnapshot | null = null;
  private inbound: InboundPolicy | null = null;
  /** The telemetry settings last pushed (undefined: none yet). */
  private telemetry: PushedTelemetry | undefined = undefined;
  /** The egress settings last pushed (undefined: none yet). */
  private egress: EgressSettings | undefined = undefined;
  private ejections: Ejection[] = [];
  /** The last HealthReport was clipped (logged once per spell). */
  private healthClipped = false;
  private identityReport: IdentityReport | null = null;
  private readonly stopHooks: (() => void)[] = [];
  private first: { promise: Promise<MeshSnapshot>; resolve: (s: MeshSnapshot) => void; reject: (e: Error) => void };
  /** Counters for the proxy's admin page. */
  readonly stats = { accepted: 0, rejected: 0, reconnects: 0, lastError: '' };

  constructor(private readonly o: DiscoveryClientOptions) {
    let resolve!: (s: MeshSnapshot) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<MeshSnapshot>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined); // a stop() before the first snapshot must not be an unhandled rejection
    this.first = { promise, resolve, reject };
  }

  get connected(): boolean {
    return this.isConnected;
  }

  current(): MeshSnapshot | null {
    return this.snapshot;
  }

  onFirstSnapshot(): Promise<MeshSnapshot> {
    return this.first.promise;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** The channel, made anew when the credentials present another certificate than when it was made. */
  private channel(): grpc.Client {
    const gen = credentialsGeneration(this.o.credentials);
    if (this.client && gen === this.clientGeneration) return this.client;
    this.client?.close();
    const { Client } = loadDiscoveryProto();
    this.clientGeneration = gen;
    this.client = new Client(this.o.address, this.o.credentials ?? grpc.credentials.createInsecure(), {
      // Detect a black-holed control plane (Linkerd's control-stream keepalive is 10 s).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 3_000,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 5_000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      ...(this.o.channelOptions ?? {}),
      // Never an environment's proxy, TLS or not (common/grpc-env-proxy.ts).
      ...NO_ENV_PROXY,
    });
    return this.client;
  }

  /** Run `fn` when the client stops (listeners registered for it). */
  onStop(fn: () => void): void {
    this.stopHooks.push(fn);
  }

  async stop(): Promise<void> {
    for (const f of this.stopHooks.splice(0)) f();
    this.running = false;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    const s = this.stream;
    this.stream = null;
    this.isConnected = false;
    s?.cancel();
    this.client?.close();
    this.client = null;
    this.first.reject(new Error('discovery client stopped'));
  }

  /**
   * The proxy's passive-health view, shown on the control plane's /debug/proxies. Resent after reconnects.
   * At most MAX_REPORTED_ENDPOINTS entries, the first ones: the control plane keeps no more,
   * and a longer list could pass the 4 MiB it takes in one message, which ends the stream;
   * the reconnect would resend it on the first response and lose the stream again, a full
   * snapshot per round, for as long as that many endpoints stayed unhealthy.
   */
  reportEjections(list: readonly Ejection[]): void {
    const dropped = Math.max(0, list.length - MAX_REPORTED_ENDPOINTS);
    if (dropped > 0) {
      this.o.onHealthReportClipped?.(dropped);
      if (!this.healthClipped) this.o.logger.warn('health report clipped: the control plane keeps no more entries', { unhealthy: list.length, sent: MAX_REPORTED_ENDPOINTS, dropped });
    }
    this.healthClipped = dropped > 0;
    this.ejections = list.slice(0, MAX_REPORTED_ENDPOINTS).map((e) => ({ ...e }));
    this.send({ health: { ejected: this.ejections } });
  }

  /** The proxy's traffic per edge (StatsReport, cumulative): not kept for a reconnect, the next report carries it all. */
  reportStats(report: StatsReport): void {
    this.send({ stats: report });
  }

  /** What the proxy trusts and presents, shown on the control plane's /debug/trust. Sent after every subscribe too. */
  reportIdentity(report: IdentityReport): void {
    this.identityReport = { ...report, trustAnchorFingerprints: [...report.trustAnchorFingerprints], startupTrustAnchorFingerprints: [...(report.startupTrustAnchorFingerprints ?? [])] };
    // Any open stream: it already carries subscribe, and the server reads in order.
    this.stream?.write({ identityReport: this.identityReport });
  }

  private send(req: DiscoveryRequest): void {
    if (this.stream && this.isConnected) this.stream.write(req);
  }

  private connect(): void {
    if (!this.running) return;
    const stream = (this.channel() as unknown as { Stream(): Stream }).Stream();
    this.stream = stream;
    stream.on('data', (r: DiscoveryResponse) => {
      if (this.stream === stream) this.onResponse(stream, r);
    });
    const lost = (why: string): void => {
      if (this.stream !== stream) return;
      this.stream = null;
      this.isConnected = false;
      this.stats.lastError = why;
      this.scheduleReconnect(why);
    };
    stream.on('error', (e: Error) => lost(e.message));
    stream.on('end', () => lost('stream ended by the control plane'));
    stream.write({
      subscribe: {
        identity: { ...this.o.identity, labels: { ...(this.o.identity.labels ?? {}) } },
        services: [...(this.o.services ?? [])],
        lastVersion: this.snapshot?.version ?? '',
        proxyVersion: WREN_VERSION,
      },
    });
    // Right behind subscribe (the server reads the stream in order), so a new replica knows at once.
    if (this.identityReport) stream.write({ identityReport: this.identityReport });
  }

  private scheduleReconnect(why: string): void {
    if (!this.running) return;
    const initial = this.o.backoff?.initialMs ?? 100;
    const max = this.o.backoff?.maxMs ?? 5_000;
    const cap = Math.min(max, initial * 2 ** Math.min(this.attempt, 30));
    // "Equal jitter": half fixed, half random, so retries spread out but never collapse to 0.
    const delay = cap / 2 + this.o.random() * (cap / 2);
    this.attempt++;
    this.stats.reconnects++;
    this.o.logger[this.attempt === 1 ? 'warn' : 'debug']('control plane stream lost; keeping the last good config', { why, retryInMs: Math.round(delay), version: this.snapshot?.version ?? null });
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
    this.timer.unref?.();
  }

  private onResponse(stream: Stream, r: DiscoveryResponse): void {
    const wasConnected = this.isConnected;
    this.isConnected = true;
    this.attempt = 0;
    if (!wasConnected && this.ejections.length > 0) stream.write({ health: { ejected: this.ejections } });
    let next: Map<string, Service>;
    let snap: MeshSnapshot;
    let inbound: InboundPolicy;
    let telemetry: PushedTelemetry | undefined;
    let egress: EgressSettings | undefined;
    let trust: TrustBundleState | null;
    let pending: void | Promise<void> = undefined;
    try {
      next = applyResponse(this.view, this.snapshot?.version ?? null, r);
      inbound = applyInboundPolicy(this.inbound, r);
      telemetry = applyTelemetry(this.telemetry, r);
      egress = applyEgress(this.egress, r);
      trust = r.trustBundle ? parseTrustBundleState(r.trustBundle, 'trustBundle') : null;
      // A delta that carries only the trust state changes no config: nothing to apply.
      const configUnchanged = !r.full && this.snapshot !== null && r.version === this.snapshot.version && !r.inboundPolicy && !r.telemetry && !r.egress
        && !r.services?.length && !r.removedServices?.length && !r.endpointDeltas?.length;
      // The telemetry rides in every snapshot once known, so a worker restarted on the latest snapshot has it too.
      snap = configUnchanged ? this.snapshot! : Object.freeze({
        version: r.version, source: `control-plane:${this.o.address}`, services: Object.freeze([...next.values()]), inboundPolicy: inbound,
        ...(telemetry ? { telemetry } : {}),
        ...(egress ? { egress } : {}),
      });
      if (!configUnchanged) pending = this.o.apply(snap);
    } catch (e) {
      return this.reject(stream, r, e);
    }
    const accept = (): void => this.accept(stream, r, next, snap, inbound, telemetry, egress, trust);
    if (pending === undefined) return accept();
    // Answered once it settles, on the stream it came on (the control plane sends the next
    // response only after this answer). A stream lost meanwhile gets nothing: the new one
    // starts again from the last version taken.
    pending.then(
      () => {
        if (this.stream === stream) accept();
      },
      (e: unknown) => {
        if (this.stream === stream) this.reject(stream, r, e, true);
      },
    );
  }

  /**
   * The version is refused (its validation, or `apply`, failed): NACKed. Refused by its
   * validation, the last good config is kept everywhere; refused by a listener worker that
   * could not apply it (or did not answer), the main thread and the other workers already
   * run it, and that worker keeps its previous config until a later version applies.
   */
  private reject(stream: Stream, r: DiscoveryResponse, e: unknown, byWorker = false): void {
    const detail = (e as Error).message;
    this.stats.rejected++;
    if (byWorker)
      this.o.logger.warn('a listener worker did not take a discovery update; NACKed (the other workers run it, that one keeps its previous config until a later version)', { version: r.version, detail, acked: this.snapshot?.version ?? null });
    else this.o.logger.warn('rejected a discovery update; keeping the last good config', { version: r.version, detail, kept: this.snapshot?.version ?? null });
    stream.write({ nack: { version: r.version, nonce: r.nonce, errorDetail: detail, resync: e instanceof ResyncError } });
  }

  /** The version is applied: it becomes the base of the next delta, and is ACKed. */
  private accept(stream: Stream, r: DiscoveryResponse, next: Map<string, Service>, snap: MeshSnapshot, inbound: InboundPolicy, telemetry: PushedTelemetry | undefined, egress: EgressSettings | undefined, trust: TrustBundleState | null): void {
    this.view = next;
    this.snapshot = snap;
    this.inbound = inbound;
    this.telemetry = telemetry;
    this.egress = egress;
    this.stats.accepted++;
    stream.write({ ack: { version: r.version, nonce: r.nonce } });
    this.first.resolve(snap);
    if (trust) {
      try {
        this.o.onTrustBundle?.(trust);
      } catch (e) {
        this.o.logger.error('handling the control plane trust state failed', { error: e });
      }
    }
  }
}
