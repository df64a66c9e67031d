import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { Ejection, EjectionKind } from '../../contract/discovery.js';
import type { Service } from '../../contract/model.js';
import type { WithdrawalMetrics } from './withdrawal-metrics.js';
import type { WithdrawalSettings } from './withdrawal-settings.js';

/**
 * Mesh-wide health-based withdrawal (issue 14): the state machine that decides, from the
 * proxies' HealthReports, which endpoints every proxy stops being sent for a while.
 *
 * Every proxy ejects a failing endpoint on its own (Envoy outlier detection semantics), so
 * when a pod dies without its readiness changing, each client pays its own failures. Here
 * the control plane pools what the proxies see:
 *
 * - Evidence: an entry of a stream's current report (already validated against what that
 *   proxy was sent, health-reports.ts) whose onset lies within `windowMs` and after the
 *   endpoint's last restoration. The onset is when the proxy says the endpoint turned
 *   unhealthy (receive time minus `ejectedForMs`), taken when the entry first appears on
 *   the stream, so a reconnect resending an old ejection is old evidence, not fresh.
 * - Withdraw when evidence from at least `minReporters` distinct reporters (SPIFFE ID plus
 *   pod: one proxy with several streams is one reporter) exists for an endpoint that the
 *   source has ready, unless the service port would then have more than
 *   `maxWithdrawnPercent` of its ready endpoints withdrawn (Envoy's panic threshold):
 *   then it is "held" (counted once, logged, shown).
 * - Restore when fewer than `minReporters` distinct reporters still list it ("cleared",
 *   whatever the onset: a proxy that still has it ejected still disagrees), when
 *   `ttlMs` has passed since the withdrawal ("ttl": probation; only reports with an onset
 *   after that can take it out again), when the source no longer has it ready ("gone":
 *   Kubernetes readiness is authoritative, the withdrawal has nothing left to do), or when
 *   the source shrank a port so far that the share withdrawn passes the threshold.
 *
 * Readiness stays authoritative for bringing endpoints in: a withdrawal only ever turns a
 * ready endpoint unready in what is pushed (withdrawal-overlay.ts), never the reverse.
 * Every decision is a metric, a log line and a row in `debug().decisions`.
 */
export interface EndpointWithdrawalOptions {
  readonly settings: WithdrawalSettings;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: WithdrawalMetrics;
  /** How many decisions /debug/health keeps (default 200). */
  readonly decisionHistory?: number;
}

type Action = 'withdrawn' | 'restored' | 'held';

export interface WithdrawalDecision {
  readonly at: string;
  readonly action: Action;
  readonly service: string;
  readonly servicePort: number;
  readonly address: string;
  readonly port: number;
  readonly reason: string;
  /** The distinct reporters whose reports count ("spiffeId namespace/pod"). */
  readonly reporters: readonly string[];
}

interface Target {
  readonly service: string;
  readonly servicePort: number;
  readonly address: string;
  readonly port: number;
}

interface Withdrawn extends Target {
  readonly since: number;
  readonly until: number;
  readonly reason: string;
  readonly reporters: readonly string[];
}

interface StreamReports {
  readonly reporter: string;
  /** Endpoint key -> what the proxy reports and since when (control-plane clock). */
  readonly entries: Map<string, { readonly target: Target; readonly kind: EjectionKind; readonly onset: number }>;
}

const keyOf = (t: Target): string => `${t.service}|${t.servicePort}|${t.address}|${t.port}`;
const groupOf = (t: Target): string => `${t.service}|${t.servicePort}`;

export class EndpointWithdrawal {
  private readonly settings: WithdrawalSettings;
  private readonly streams = new Map<number, StreamReports>();
  private readonly withdrawn = new Map<string, Withdrawn>();
  private readonly restoredAt = new Map<string, number>();
  private readonly held = new Set<string>();
  /** Service port ("service|port") -> keys of its endpoints the source has ready. */
  private readonly ready = new Map<string, Set<string>>();
  /** Service key -> its groups in `ready`. */
  private readonly portsOf = new Map<string, string[]>();
  private readonly decisions: WithdrawalDecision[] = [];
  private readonly listeners = new Set<(services: readonly string[]) => void>();
  private timer: Timer | null = null;
  private readonly log: Logger;

  constructor(private readonly o: EndpointWithdrawalOptions) {
    this.settings = o.settings;
    this.log = o.logger.child({ component: 'health-withdrawal' });
  }

  /** Called with the keys ("name.namespace") of services whose withdrawn set changed. */
  onChange(fn: (services: readonly string[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * The source's view (what Kubernetes or the files say is ready). `changed`: the service
   * keys that changed since the last call (null: all), so a commit costs its own services only.
   */
  setSource(services: ReadonlyMap<string, Service>, changed: readonly string[] | null = null): void {
    for (const key of changed ?? [...new Set([...this.portsOf.keys(), ...services.keys()])]) {
      for (const g of this.portsOf.get(key) ?? []) this.ready.delete(g);
      this.portsOf.delete(key);
      const s = services.get(key);
      if (!s) continue;
      const groups: string[] = [];
      for (const p of s.ports) {
        const set = new Set<string>();
        for (const e of p.endpoints) if (e.ready) set.add(keyOf({ service: key, servicePort: p.port, address: e.address, port: e.port }));
        this.ready.set(`${key}|${p.port}`, set);
        groups.push(`${key}|${p.port}`);
      }
      this.portsOf.set(key, groups);
    }
    // Nothing reported and nothing withdrawn: nothing to decide (the common case for a big mesh).
    if (this.streams.size > 0 || this.withdrawn.size > 0) this.evaluate();
  }

  /**
   * A stream's HealthReport, already validated (only endpoints that proxy was sent). It
   * replaces the stream's previous one. `reporter` names the proxy ("spiffeId ns/pod").
   */
  report(stream: number, reporter: string, entries: readonly Ejection[]): void {
    const now = this.o.clock.now();
    const prev = this.streams.get(stream);
    const next: StreamReports = { reporter, entries: new Map() };
    for (const e of entries) {
      const target: Target = { service: e.service, servicePort: e.servicePort, address: e.address, port: e.port };
      const key = keyOf(target);
      if (next.entries.has(key)) continue;
      const old = prev?.reporter === reporter ? prev.entries.get(key) : undefined;
      const onset = old?.onset ?? now - Math.min(Math.max(0, e.ejectedForMs), 365 * 86_400_000);
      next.entries.set(key, { target, kind: e.kind, onset });
    }
    this.streams.set(stream, next);
    this.evaluate();
  }

  /** A stream ended: its reports go with it. */
  forget(stream: number): void {
    if (this.streams.delete(stream)) this.evaluate();
  }

  /** Keys "servicePort|address:port" withdrawn in a service (empty set: none). */
  withdrawnIn(service: string): ReadonlySet<string> {
    const out = new Set<string>();
    for (const w of this.withdrawn.values()) if (w.service === service) out.add(`${w.servicePort}|${w.address}:${w.port}`);
    return out;
  }

  /** For /debug/health. */
  debug(): { settings: WithdrawalSettings; withdrawn: unknown[]; held: string[]; decisions: readonly WithdrawalDecision[] } {
    const iso = (t: number) => new Date(t).toISOString();
    return {
      settings: this.settings,
      withdrawn: [...this.withdrawn.values()].map((w) => ({
        service: w.service, servicePort: w.servicePort, address: w.address, port: w.port, since: iso(w.since), until: iso(w.until), reason: w.reason, reporters: w.reporters,
      })),
      held: [...this.held],
      decisions: [...this.decisions],
    };
  }

  close(): void {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  private evaluate(): void {
    const now = this.o.clock.now();
    const s = this.settings;
    const changed = new Set<string>();
    // Who lists each endpoint now (any onset), with each reporter's latest onset and kind.
    const listing = new Map<string, { target: Target; all: Map<string, { onset: number; kind: EjectionKind }> }>();
    for (const st of this.streams.values())
      for (const [key, e] of st.entries) {
        let l = listing.get(key);
        if (!l) listing.set(key, (l = { target: e.target, all: new Map() }));
        const prev = l.all.get(st.reporter);
        if (!prev || e.onset > prev.onset) l.all.set(st.reporter, { onset: e.onset, kind: e.kind });
      }
    // Fresh evidence: an onset within the window and after the last restoration (read after the restorations below).
    const fresh = (key: string, all: Map<string, { onset: number; kind: EjectionKind }>) => {
      const after = Math.max(now - s.windowMs, this.restoredAt.get(key) ?? -Infinity);
      return [...all].filter(([, r]) => r.onset >= after);
    };
    const isReady = (t: Target, key: string) => this.ready.get(groupOf(t))?.has(key) ?? false;
    const restore = (key: string, w: Withdrawn, reason: string, reporters: readonly string[]) => {
      this.withdrawn.delete(key);
      this.restoredAt.set(key, now);
      changed.add(w.service);
      this.decide('restored', w, reason, reporters);
    };

    for (const [key, w] of [...this.withdrawn]) {
      const reporters = [...(listing.get(key)?.all.keys() ?? [])].sort();
      if (!s.enabled) restore(key, w, 'disabled', reporters);
      else if (!isReady(w, key)) restore(key, w, 'gone', reporters);
      else if (now >= w.until) restore(key, w, 'ttl', reporters);
      else if (reporters.length < s.minReporters) restore(key, w, 'cleared', reporters);
    }
    // The source may have shrunk a port: give back the most recent withdrawals over the limit.
    const perGroup = new Map<string, Withdrawn[]>();
    for (const w of this.withdrawn.values()) perGroup.set(groupOf(w), [...(perGroup.get(groupOf(w)) ?? []), w]);
    for (const [g, ws] of perGroup) {
      const limit = this.limit(g);
      ws.sort((a, b) => b.since - a.since);
      for (const w of ws.slice(0, Math.max(0, ws.length - limit))) restore(keyOf(w), w, 'panic-threshold', [...(listing.get(keyOf(w))?.all.keys() ?? [])].sort());
    }

    const candidates = new Set<string>();
    if (s.enabled)
      for (const [key, l] of listing) {
        const evidence = fresh(key, l.all);
        if (this.withdrawn.has(key) || evidence.length < s.minReporters || !isReady(l.target, key)) continue;
        candidates.add(key);
        const g = groupOf(l.target);
        const inGroup = [...this.withdrawn.values()].filter((w) => groupOf(w) === g).length;
        const reporters = evidence.map(([r]) => r).sort();
        if (inGroup + 1 > this.limit(g)) {
          if (!this.held.has(key)) {
            this.held.add(key);
            this.decide('held', l.target, 'panic-threshold', reporters);
          }
          continue;
        }
        this.held.delete(key);
        const reason = majority(evidence.map(([, r]) => r.kind));
        const w: Withdrawn = { ...l.target, since: now, until: now + s.ttlMs, reason, reporters };
        this.withdrawn.set(key, w);
        changed.add(w.service);
        this.decide('withdrawn', w, reason, reporters);
      }
    for (const key of [...this.held]) if (!candidates.has(key)) this.held.delete(key);
    // Restoration marks only matter within a window (afterwards `now - windowMs` is later).
    for (const [key, t] of [...this.restoredAt]) if (t < now - s.windowMs) this.restoredAt.delete(key);

    this.o.metrics?.withdrawn.set(this.withdrawn.size);
    this.schedule(now);
    if (changed.size > 0) {
      const list = [...changed].sort();
      for (const l of this.listeners) l(list);
    }
  }

  /** How many endpoints of a service port may be withdrawn: floor(ready × percent), Envoy's panic threshold. */
  private limit(group: string): number {
    return Math.floor(((this.ready.get(group)?.size ?? 0) * this.settings.maxWithdrawnPercent) / 100);
  }

  private schedule(now: number): void {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    let next = Infinity;
    for (const w of this.withdrawn.values()) next = Math.min(next, w.until);
    if (next === Infinity) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      this.evaluate();
    }, Math.max(0, next - now));
    this.timer.unref?.();
  }

  private decide(action: Action, t: Target, reason: string, reporters: readonly string[]): void {
    const d: WithdrawalDecision = {
      at: new Date(this.o.clock.wallNow()).toISOString(), action, service: t.service, servicePort: t.servicePort, address: t.address, port: t.port, reason, reporters,
    };
    this.decisions.push(Object.freeze(d));
    const max = this.o.decisionHistory ?? 200;
    if (this.decisions.length > max) this.decisions.splice(0, this.decisions.length - max);
    const m = this.o.metrics;
    const labels = { service: t.service, reason };
    if (action === 'withdrawn') m?.withdrawals.inc(labels);
    else if (action === 'restored') m?.restorations.inc(labels);
    else m?.held.inc(labels);
    const fields = { service: t.service, servicePort: t.servicePort, endpoint: `${t.address}:${t.port}`, reason, reporters };
    if (action === 'withdrawn') this.log.warn('endpoint withdrawn from every proxy on health reports', { ...fields, ttlMs: this.settings.ttlMs });
    else if (action === 'restored') this.log.info('withdrawn endpoint restored', fields);
    else this.log.warn('endpoint reported unhealthy by enough proxies but kept: withdrawing it would pass the panic threshold', { ...fields, maxWithdrawnPercent: this.settings.maxWithdrawnPercent });
  }
}

function majority(kinds: readonly EjectionKind[]): EjectionKind {
  const n = new Map<EjectionKind, number>();
  for (const k of kinds) n.set(k, (n.get(k) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0][0];
}
