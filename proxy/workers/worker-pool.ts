import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';
import type { Clock, Timer } from '../../common/clock.js';
import type { Level, Logger } from '../../common/logger.js';
import { ListenError } from '../../common/listen.js';
import type { MeshSnapshot } from '../../contract/model.js';
import type { RecentDecisions } from '../stats/recent-decisions.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import { Counter, Gauge, type Registry } from '../metrics/prom.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import { mergeClusterStates } from './merge-cluster-states.js';
import type { FromWorker, ToWorker, WorkerData, WorkerPorts } from './messages.js';
import { resetColumn } from '../resilience/shared-counters.js';
import { resetAdmissionColumn } from '../net/shared-admission.js';
import { sharedLimitsMemory, type SharedLimitsMemory } from './shared-limits.js';

export interface WorkerPoolOptions {
  readonly count: number;
  readonly config: ProxyConfig;
  /** The main thread's identity: every rotation is sent to the workers. */
  readonly tls: TlsIdentity;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The main thread's registry (restart counter, worker gauge). */
  readonly registry: Registry;
  /** wren_limit_exceeded_total: a worker terminated because it had not closed in time counts limit="worker-shutdown-timeout". */
  readonly limits: Counter<'direction' | 'limit'>;
  /** A worker's cluster health changed (HealthReport). */
  readonly onHealthChange: () => void;
}

/** A snapshot's answer awaited (WorkerPool.applySnapshot), bounded by limits.workerApplyTimeoutMs. */
interface SnapshotWait {
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  timer: Timer | null;
}

interface Slot {
  readonly id: number;
  worker: Worker | null;
  listening: boolean;
  applied: number;
  /** The snapshot seq this worker could not apply ('apply-failed') and why, until it applies that one or a newer one: it serves its older config meanwhile. */
  failed: { readonly seq: number; readonly error: string } | null;
  clusters: Record<string, unknown>;
  closed: (() => void) | null;
  restarts: number;
  /** When its worker last began listening (the clock's ms): how long it stayed up decides whether a crash counts as a loop. */
  upSince: number;
}

/**
 * A crashed worker is restarted after this, doubling per failed start, and per crash of a
 * worker that had been up for less than RESTART_STABLE_MS, up to RESTART_MAX_MS: a worker
 * that dies soon after it starts listening (a poison config, a request that crashes it
 * every time) is in a crash loop and backs off like one, as the kubelet's CrashLoopBackOff
 * does (it forgets the backoff only after a container has run for 10 minutes).
 */
const RESTART_MIN_MS = 100;
const RESTART_STABLE_MS = 30_000;
const RESTART_MAX_MS = 5000;
/** A worker that does not answer a scrape within this is left out of that scrape. */
const SCRAPE_TIMEOUT_MS = 5000;
/** GET /clusters waits this long for a worker's current state, then shows its last pushed one (an admin call must not hang). */
const CLUSTERS_TIMEOUT_MS = 1000;
/** How long close() waits for a worker to close its listeners before terminating it (drain: after the grace period). */
const CLOSE_TIMEOUT_MS = 5000;
const STOP_TIMEOUT = { direction: 'workers', limit: 'worker-shutdown-timeout' } as const;

/** The compiled worker entry: beside this module in dist/, or dist/ seen from the sources (jest). */
function entry(): URL {
  for (const p of ['./worker-main.js', '../../dist/proxy/workers/worker-main.js']) {
    const u = new URL(p, import.meta.url);
    if (existsSync(u)) return u;
  }
  throw new Error('proxy/workers/worker-main.js not found (npm run build)');
}

/**
 * The listener workers of a proxy with `concurrency` N > 1 (Envoy's --concurrency: N
 * worker threads, each with its own copy of every listener, the kernel spreading
 * connections over them; the main thread keeps xDS, SDS and the admin port).
 *
 * Worker 0 binds first, so a port 0 in the config becomes one real port the others join
 * with SO_REUSEPORT. Every snapshot and every certificate rotation is posted to every
 * worker; readiness holds until all are listening and have applied the latest snapshot.
 * A worker that exits unexpectedly is logged (WORKER_EXITED), counted
 * (wren_worker_restarts_total) and started again on the same ports with the current
 * snapshot and certificate; the others keep serving meanwhile.
 */
export class WorkerPool {
  private readonly slots: Slot[];
  private latest: { seq: number; snapshot: MeshSnapshot } | null = null;
  private config: ProxyConfig;
  private closing = false;
  private scrapeId = 0;
  private readonly scrapes = new Map<number, (json: unknown) => void>();
  private readonly restartsTotal: Counter;
  private readonly applyFailures: Counter;
  private readonly url = entry();
  private readonly offRotate: () => void;
  /** The limits every worker holds together (shared-limits.ts): made once, so they outlive snapshots and restarts. */
  readonly shared: SharedLimitsMemory;

  constructor(private readonly o: WorkerPoolOptions) {
    this.config = o.config;
    this.shared = sharedLimitsMemory(o.config, o.clock);
    this.slots = Array.from({ length: o.count }, (_, id) => ({ id, worker: null, listening: false, applied: 0, failed: null, clusters: {}, closed: null, restarts: 0, upSince: 0 }));
    this.restartsTotal = new Counter({ name: 'wren_worker_restarts_total', help: 'Listener workers that exited unexpectedly and were restarted', registers: [o.registry] });
    this.applyFailures = new Counter({ name: 'wren_worker_apply_failures_total', help: 'Config snapshots a listener worker could not apply (it kept its previous config)', registers: [o.registry] });
    const slots = this.slots;
    new Gauge({
      name: 'wren_workers_listening', help: 'Listener workers currently listening (config concurrency)', registers: [o.registry],
      collect() {
        this.set(slots.filter((s) => s.listening).length);
      },
    });
    this.offRotate = o.tls.onRotate(() => this.broadcast({ t: 'rotate', material: o.tls.material }));
    // Shown at 0 from the start: a dashboard sees the series before the first shutdown.
    o.limits.inc(STOP_TIMEOUT, 0);
  }

  /**
   * Starts every worker; rejects (ListenError) if one cannot bind, with the others stopped.
   * `main`: the ports the main thread bound (admin, metrics; port 0 resolved), which every
   * worker refuses as a peer's target port like its own listeners' (proxy/inbound/target-port.ts).
   */
  async start(main: { readonly admin: number; readonly metrics: number }): Promise<WorkerPorts> {
    const M = this.config.listeners;
    this.config = { ...this.config, listeners: { ...M, admin: { ...M.admin, port: main.admin }, metrics: { ...M.metrics, port: main.metrics } } };
    const first = await this.spawn(this.slots[0]);
    // Resolve port 0 once: the siblings bind the port worker 0 got.
    const L = this.config.listeners;
    this.config = {
      ...this.config,
      listeners: { ...L, outbound: { ...L.outbound, port: first.outbound }, inbound: { ...L.inbound, port: first.inbound } },
      upstreams: this.config.upstreams.map((u, i) => ({ ...u, localPort: first.upstreams[i] })),
    };
    const rest = await Promise.allSettled(this.slots.slice(1).map((s) => this.spawn(s)));
    const failed = rest.find((r) => r.status === 'rejected');
    if (failed) {
      await this.close();
      throw (failed as PromiseRejectedResult).reason;
    }
    return first;
  }

  private spawn(slot: Slot): Promise<WorkerPorts> {
    // What a previous worker in this slot held (requests, connections) ended with it: its column starts at 0.
    resetColumn(this.shared.counters, slot.id);
    resetAdmissionColumn(this.shared.admission, slot.id);
    const data: WorkerData = { id: slot.id, config: this.config, material: this.o.tls.material, snapshot: this.latest, logLevel: this.o.logger.level, shared: this.shared };
    const w = new Worker(this.url, { workerData: data, name: `wren-worker-${slot.id}` });
    slot.worker = w;
    slot.applied = 0;
    slot.failed = null;
    return new Promise<WorkerPorts>((resolve, reject) => {
      let started = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'listening':
            started = true;
            slot.listening = true;
            slot.upSince = this.o.clock.now();
            return resolve(m.ports);
          case 'start-failed':
            started = true;
            void w.terminate();
            return reject(new ListenError(`${m.listener} (worker ${slot.id})`, m.address, m.port, Object.assign(new Error(m.message), { code: m.code })));
          case 'applied':
            slot.applied = m.seq;
            if (slot.failed !== null && slot.failed.seq <= m.seq) slot.failed = null;
            return this.settleWaits();
          case 'apply-failed':
            // Not applied: the worker keeps serving its previous config, so it is not on the
            // latest one (notReady) and the version is not taken (Proxy.applySnapshot). It
            // counted as applied, and the sidecar reported ready with one worker behind.
            slot.failed = { seq: m.seq, error: m.error };
            this.applyFailures.inc();
            this.o.logger.error('a listener worker could not apply the config; it keeps its previous one', { code: 'WORKER_APPLY_FAILED', worker: slot.id, seq: m.seq, error: m.error });
            return this.settleWaits();
          case 'metrics':
            return this.scrapes.get(m.id)?.(m.json);
          case 'decisions':
            return this.scrapes.get(m.id)?.(m.decisions);
          case 'clusters':
            return this.scrapes.get(m.id)?.(m.clusters);
          case 'health':
            slot.clusters = m.clusters;
            return this.o.onHealthChange();
          case 'log':
            return this.relay(slot.id, m.line);
          case 'outlier':
            // Envoy posts a consecutive-error detection to its main thread, which ejects for every worker; here the worker ejected, and the others are told.
            for (const s of this.slots) if (s !== slot) s.worker?.postMessage(m satisfies ToWorker);
            return;
          case 'drained':
          case 'closed':
            return slot.closed?.();
        }
      });
      // An uncaught exception ends the worker: 'error', then 'exit'.
      w.on('error', (e) => this.o.logger.error('listener worker failed', { code: 'WORKER_ERROR', worker: slot.id, error: e }));
      w.on('exit', (code) => {
        if (!started) reject(new ListenError(`worker ${slot.id}`, '', 0, new Error(`worker exited with code ${code} before listening`)));
        // A stop already let go of this worker, or a newer one holds the slot.
        if (slot.worker !== w) return;
        const wasListening = slot.listening;
        slot.worker = null;
        slot.listening = false;
        slot.closed?.();
        // It no longer holds the answer to a snapshot (its replacement starts with the latest).
        this.settleWaits();
        // Its clusters (ejections, open breakers) died with it: the HealthReport no longer
        // carries them; the worker that takes the slot posts its own once it applies the config.
        if (Object.keys(slot.clusters).length > 0) {
          slot.clusters = {};
          this.o.onHealthChange();
        }
        if (this.closing || !wasListening) return;
        // Up long enough: this crash starts afresh; a short life keeps doubling the delay.
        if (this.o.clock.now() - slot.upSince >= RESTART_STABLE_MS) slot.restarts = 0;
        this.restartsTotal.inc();
        const delay = this.restart(slot);
        // The delay is logged (as the kubelet's "back-off 1.6s restarting"): a crash loop reads off it.
        this.o.logger.error('listener worker exited; restarting it', { code: 'WORKER_EXITED', worker: slot.id, exitCode: code, restartInMs: delay });
      });
    });
  }

  /** Starts the slot's worker again after the crash-loop delay, which it returns. */
  private restart(slot: Slot): number {
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** slot.restarts++);
    this.o.clock.setTimeout(() => {
      if (this.closing) return;
      this.spawn(slot).catch((e: unknown) => {
        this.o.logger.error('listener worker could not start again', { code: 'WORKER_RESTART_FAILED', worker: slot.id, error: e });
        this.restart(slot);
      });
    }, delay);
    return delay;
  }

  /** A worker's log line, re-emitted through the main logger (its level and sink). */
  private relay(worker: number, line: string): void {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const { ts: _ts, level, msg, ...fields } = rec;
    const log = this.o.logger[(level as Level) ?? 'info'];
    if (typeof log === 'function') log(String(msg), { ...fields, worker });
  }

  private broadcast(m: ToWorker): void {
    for (const s of this.slots) s.worker?.postMessage(m);
  }

  /**
   * Sends the snapshot to every worker. Settles once every listening worker has applied it
   * (or a newer one), or rejects as soon as one could not (it keeps its previous config):
   * the discovery client ACKs or NACKs the version on this (Proxy.whenApplied). A worker
   * that is not listening (restarting) does not hold it: it starts with the latest snapshot,
   * and readiness waits for it (notReady).
   */
  applySnapshot(snapshot: MeshSnapshot): Promise<void> {
    const seq = (this.latest?.seq ?? 0) + 1;
    this.latest = { seq, snapshot };
    this.broadcast({ t: 'snapshot', ...this.latest });
    return new Promise<void>((resolve, reject) => {
      const w: SnapshotWait = { seq, resolve, reject, timer: null };
      this.waits.push(w);
      this.settleWaits();
      if (this.waits.includes(w)) w.timer = this.o.clock.setTimeout(() => this.answerTimedOut(w), this.o.config.limits.workerApplyTimeoutMs);
    });
  }

  /** The snapshot answers still awaited (applySnapshot), settled as the workers answer, exit or restart. */
  private waits: SnapshotWait[] = [];

  private settleWaits(): void {
    if (this.waits.length === 0) return;
    this.waits = this.waits.filter((w) => {
      const failed = this.slots.find((s) => s.failed !== null && s.failed.seq === w.seq);
      if (failed) {
        this.settle(w);
        w.reject(new Error(`listener worker ${failed.id} could not apply the config: ${failed.failed!.error}`));
        return false;
      }
      // A worker down or restarting does not hold it, nor one that has moved on to a newer version.
      if (this.closing || this.slots.every((s) => !s.worker || !s.listening || s.applied >= w.seq || (s.failed !== null && s.failed.seq > w.seq))) {
        this.settle(w);
        w.resolve();
        return false;
      }
      return true;
    });
  }

  private settle(w: SnapshotWait): void {
    if (w.timer !== null) this.o.clock.clearTimeout(w.timer);
    w.timer = null;
  }

  /**
   * A listening worker did not answer within limits.workerApplyTimeoutMs (its event loop is
   * stuck): the version is NACKed rather than the config stream held for ever, as the control
   * plane sends its next response only after an answer. The worker stays not ready (notReady:
   * not on the latest snapshot) until it catches up.
   */
  private answerTimedOut(w: SnapshotWait): void {
    w.timer = null;
    const i = this.waits.indexOf(w);
    if (i < 0) return;
    this.waits.splice(i, 1);
    const late = this.slots.filter((s) => s.worker && s.listening && s.applied < w.seq).map((s) => s.id);
    this.o.limits.inc({ direction: 'discovery', limit: 'worker-apply-timeout' });
    this.o.logger.error('listener workers did not answer a config snapshot in time; it is refused', { code: 'WORKER_APPLY_TIMEOUT', workers: late, seq: w.seq, timeoutMs: this.o.config.limits.workerApplyTimeoutMs });
    w.reject(new Error(`listener worker ${late.join(', ')} did not apply the config within limits.workerApplyTimeoutMs (${this.o.config.limits.workerApplyTimeoutMs} ms)`));
  }

  setLogLevel(level: Level): void {
    this.broadcast({ t: 'log-level', level });
  }

  /** Why the workers are not ready, or null: all listening, all on the latest snapshot. */
  notReady(): string | null {
    const down = this.slots.filter((s) => !s.listening).length;
    if (down > 0) return `${down} of ${this.slots.length} listener workers not listening`;
    const seq = this.latest?.seq ?? 0;
    const failed = this.slots.filter((s) => s.applied < seq && s.failed !== null);
    if (failed.length > 0) return `${failed.length} of ${this.slots.length} listener workers could not apply the config (worker ${failed[0].id}: ${failed[0].failed!.error})`;
    const behind = this.slots.filter((s) => s.applied < seq).length;
    return behind > 0 ? `${behind} of ${this.slots.length} listener workers applying the config` : null;
  }

  /** The workers' clusters as of their last health change (for the HealthReport: health only moves with those). */
  clusterStates(): Record<string, unknown> {
    return mergeClusterStates(this.slots.map((s) => s.clusters));
  }

  /**
   * GET /clusters: every listening worker is asked for its clusters' state now (in-flight
   * counts, EWMA, limits move with every request, not with health changes) and the answers
   * are merged (merge-cluster-states.ts). A worker that does not answer within 1 s is shown
   * by its last pushed state.
   */
  async currentClusterStates(): Promise<Record<string, unknown>> {
    const live = this.slots.filter((s) => s.worker && s.listening);
    const answers = await Promise.all(live.map((s) => this.scrape(s.worker!, 'clusters', CLUSTERS_TIMEOUT_MS)));
    return mergeClusterStates(live.map((s, i) => (answers[i] as Record<string, unknown> | null) ?? s.clusters));
  }

  /** Prometheus text: the main registry plus every worker's, summed (prom-client's cluster aggregation, for threads). */
  async metrics(main: Registry): Promise<{ contentType: string; body: string }> {
    const own = await main.getMetricsAsJSON();
    const theirs = await Promise.all(this.slots.filter((s) => s.worker && s.listening).map((s) => this.scrape(s.worker!)));
    // Loaded here, not through 'prom-client' (proxy/metrics/prom.ts says why): only a proxy with workers pays for it.
    const AggregatorRegistry = createRequire(import.meta.url)('prom-client/lib/cluster') as typeof Prom.AggregatorRegistry;
    const sum = AggregatorRegistry.aggregate([own, ...theirs.filter((j) => j !== null)] as Prom.MetricObjectWithValues<Prom.MetricValue<string>>[][]);
    return { contentType: main.contentType, body: await sum.metrics() };
  }

  /**
   * Every listening worker's recent authorization denials and retries (decided on its data
   * path), asked for like its metrics: the main thread's StatsReport carries them (a
   * worker that does not answer in time is left out of this report).
   */
  async recentDecisions(): Promise<(RecentDecisions | null)[]> {
    return (await Promise.all(this.slots.filter((s) => s.worker && s.listening).map((s) => this.scrape(s.worker!, 'decisions')))) as (RecentDecisions | null)[];
  }

  private scrape(w: Worker, kind: 'metrics' | 'decisions' | 'clusters' = 'metrics', timeoutMs = SCRAPE_TIMEOUT_MS): Promise<unknown> {
    const id = ++this.scrapeId;
    return new Promise((resolve) => {
      const t = this.o.clock.setTimeout(() => {
        this.scrapes.delete(id);
        resolve(null);
      }, timeoutMs);
      this.scrapes.set(id, (json) => {
        this.o.clock.clearTimeout(t);
        this.scrapes.delete(id);
        resolve(json);
      });
      w.postMessage({ t: kind, id } satisfies ToWorker);
    });
  }

  /**
   * Every worker drains (inbound GOAWAY, in-flight requests finish within the grace period,
   * its outbound keeps serving), and once all are drained every worker closes: a worker with
   * nothing in flight must not close the outbound connections the app holds to it while
   * another still drains (Istio keeps the whole outbound up until the drain is over). A
   * worker not drained 5 s after the grace period (its event loop stuck), or not closed 5 s
   * after being told to, is terminated all the same, so a SIGTERM always ends the process
   * before the kubelet's SIGKILL: logged (WORKER_STOP_TIMEOUT) and counted
   * (wren_limit_exceeded_total{direction="workers",limit="worker-shutdown-timeout"}).
   * `minDrainMs` (at most the grace period): each worker keeps its outbound up at least
   * that long (Proxy.quiesce).
   */
  async drain(gracePeriodMs: number, minDrainMs = 0): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => this.stop(s, { t: 'drain', minDrainMs }, gracePeriodMs + CLOSE_TIMEOUT_MS, false)));
    await this.close();
  }

  close(): Promise<void> {
    return this.stopAll({ t: 'close' }, CLOSE_TIMEOUT_MS);
  }

  private async stopAll(m: ToWorker, timeoutMs: number): Promise<void> {
    this.closing = true;
    this.settleWaits();
    this.offRotate();
    await Promise.all(this.slots.map((s) => this.stop(s, m, timeoutMs, true)));
  }

  /** Sends `m` and waits for the answer ('drained', 'closed') or the exit; terminated when it does not come in time, or at once with `terminate`. */
  private async stop(s: Slot, m: ToWorker, timeoutMs: number, terminate: boolean): Promise<void> {
    const w = s.worker;
    if (!w) return;
    const answered = await new Promise<boolean>((resolve) => {
      const t = this.o.clock.setTimeout(() => {
        this.o.limits.inc(STOP_TIMEOUT);
        this.o.logger.error('a listener worker did not close in time; terminating it', { code: 'WORKER_STOP_TIMEOUT', worker: s.id, timeoutMs });
        resolve(false);
      }, timeoutMs);
      s.closed = () => {
        this.o.clock.clearTimeout(t);
        resolve(true);
      };
      w.postMessage(m);
    });
    s.closed = null;
    if (answered && !terminate && s.worker === w) return;
    s.worker = null; // a second stop (drain, then close) has nothing left to wait for
    await w.terminate();
  }
}
