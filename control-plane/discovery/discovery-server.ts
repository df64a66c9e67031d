import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import {
  fullResponse, loadDiscoveryProto,
  type DiscoveryRequest, type DiscoveryResponse, type Ejection, type Subscribe,
} from '../../contract/discovery.js';
import type { Service } from '../../contract/model.js';
import type { ControlPlaneMetrics } from '../metrics.js';
import type { MeshStore, StoreView } from '../store/mesh-store.js';
import { diffViews, isEmptyDelta } from './delta.js';
import { encodePolicySuffix, WorkloadPolicies } from './workload-policy.js';

/**
 * The server side of wren.discovery.v1 Discovery.Stream.
 *
 * Per stream it keeps the view the proxy last ACKed (an immutable Map shared with the
 * store) and at most one response in flight. On every store change each subscriber is
 * "pumped": if nothing is in flight it gets the delta from its ACKed view to the current
 * one. Subscribers with the same filter at the same ACKed version get the very same
 * delta, so it is computed and serialized once per (filter, from, to) and the bytes are
 * written to every stream (that is what keeps 1000 subscribers cheap).
 *
 * NACK: the response is recorded (metric, log, /debug/proxies) and the subscriber stays
 * at its last ACKed view; the next delta is computed from there when the view changes
 * again (no retry loop on the same bad content). A NACK with `resync` gets a full
 * snapshot at once.
 *
 * Inbound policy: each subscriber also gets its own workload's InboundPolicy (resolved
 * from PeerAuthentications, AuthorizationPolicies and its labels), in every full
 * response and in a delta whenever it differs from the one the subscriber ACKed, even
 * if no service changed. It is versioned and ACKed with the response that carries it.
 */
export interface PushRecord {
  readonly subscriber: number;
  readonly identity: string;
  readonly version: string;
  readonly full: boolean;
  readonly bytes: number;
  readonly response: DiscoveryResponse;
}

interface Entry {
  readonly seq: number;
  readonly version: string;
  readonly committedAt: number;
  readonly nonce: string;
  readonly view: ReadonlyMap<string, Service>;
  readonly full: boolean;
  /** null: nothing this subscriber watches changed. */
  readonly bytes: Buffer | null;
  readonly response: DiscoveryResponse | null;
  /** `bytes` plus an inbound policy, by policy JSON: subscribers with the same policy share these too. */
  readonly withPolicy: Map<string, Buffer>;
}

interface Subscriber {
  readonly id: number;
  readonly call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>;
  readonly peer: string;
  readonly connectedAt: number;
  sub: Subscribe | null;
  filter: ReadonlySet<string> | null;
  filterId: string;
  ackedSeq: number;
  ackedVersion: string;
  ackedView: ReadonlyMap<string, Service>;
  /** Inbound policy JSON the proxy ACKed (null: none yet). */
  ackedPolicyJson: string | null;
  /** policyJson: the inbound policy this response carries, null when it carries none. */
  inflight: (Entry & { sentAt: number; policyJson: string | null }) | null;
  nackedSeq: number;
  forceFull: boolean;
  nacks: number;
  lastNack: { version: string; detail: string; at: number } | null;
  ejections: readonly Ejection[];
  closed: boolean;
}

export interface DiscoveryServerOptions {
  readonly store: MeshStore;
  readonly metrics: ControlPlaneMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Policies here without a selector are mesh-wide (default wren-system). */
  readonly rootNamespace?: string;
}

export class DiscoveryServer {
  private readonly subs = new Set<Subscriber>();
  private readonly cache = new Map<string, Entry>();
  private cacheSeq = -1;
  private nextId = 1;
  private readonly pushListeners = new Set<(p: PushRecord) => void>();
  private readonly unsubscribe: () => void;
  private readonly policies: WorkloadPolicies;

  constructor(private readonly o: DiscoveryServerOptions) {
    this.policies = new WorkloadPolicies(o.rootNamespace);
    this.unsubscribe = o.store.onChange(() => {
      for (const s of this.subs) this.pump(s);
    });
  }

  /** Service definition whose serializer lets pre-encoded Buffers through (shared bytes across subscribers). */
  static definition(): grpc.ServiceDefinition {
    const base = loadDiscoveryProto().service;
    const m = base.Stream;
    return { Stream: { ...m, responseSerialize: (v: unknown) => (Buffer.isBuffer(v) ? v : m.responseSerialize(v)) } };
  }

  readonly implementation: grpc.UntypedServiceImplementation = {
    Stream: (call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>) => this.onStream(call),
  };

  /** Observe every response written (tests, benchmark). */
  onPush(fn: (p: PushRecord) => void): () => void {
    this.pushListeners.add(fn);
    return () => this.pushListeners.delete(fn);
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** For /debug/proxies. */
  debugProxies(): Record<string, unknown>[] {
    return [...this.subs].map((s) => ({
      id: s.id,
      peer: s.peer,
      identity: s.sub?.identity ?? null,
      services: s.sub?.services ?? [],
      connectedForMs: Math.round(this.o.clock.now() - s.connectedAt),
      ackedVersion: s.ackedVersion || null,
      inboundPolicy: s.ackedPolicyJson === null ? null : s.ackedPolicyJson === '' ? 'default' : (JSON.parse(s.ackedPolicyJson) as unknown),
      inflightVersion: s.inflight?.version ?? null,
      nacks: s.nacks,
      lastNack: s.lastNack,
      ejections: s.ejections,
    }));
  }

  /** Graceful shutdown: end every stream with UNAVAILABLE so proxies reconnect to another replica. */
  closeAll(): void {
    this.unsubscribe();
    for (const s of [...this.subs]) {
      s.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down' });
      this.drop(s);
    }
  }

  private onStream(call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>): void {
    const s: Subscriber = {
      id: this.nextId++, call, peer: call.getPeer(), connectedAt: this.o.clock.now(), sub: null, filter: null, filterId: '*',
      ackedSeq: -1, ackedVersion: '', ackedView: new Map(), ackedPolicyJson: null, inflight: null, nackedSeq: -1, forceFull: false, nacks: 0,
      lastNack: null, ejections: [], closed: false,
    };
    this.subs.add(s);
    this.o.metrics.subscribers.set(this.subs.size);
    call.on('data', (req: DiscoveryRequest) => this.onRequest(s, req));
    call.on('end', () => {
      this.drop(s);
      call.end();
    });
    call.on('error', () => this.drop(s));
    call.on('cancelled', () => this.drop(s));
  }

  private drop(s: Subscriber): void {
    if (s.closed) return;
    s.closed = true;
    this.subs.delete(s);
    this.o.metrics.subscribers.set(this.subs.size);
  }

  private fail(s: Subscriber, code: grpc.status, details: string): void {
    this.o.logger.warn('discovery stream rejected', { peer: s.peer, details });
    s.call.emit('error', { code, details });
    this.drop(s);
  }

  private onRequest(s: Subscriber, req: DiscoveryRequest): void {
    if (s.closed) return;
    if ('subscribe' in req && req.subscribe) {
      if (s.sub) return this.fail(s, grpc.status.FAILED_PRECONDITION, 'subscribe sent twice on one stream');
      const id = req.subscribe.identity;
      if (!id || !id.spiffeId.startsWith('spiffe://')) return this.fail(s, grpc.status.INVALID_ARGUMENT, 'subscribe.identity.spiffeId must be a SPIFFE ID');
      s.sub = req.subscribe;
      const services = [...new Set(req.subscribe.services ?? [])].sort();
      s.filter = services.length > 0 ? new Set(services) : null;
      s.filterId = services.length > 0 ? services.join(',') : '*';
      this.o.logger.info('proxy subscribed', { id: s.id, peer: s.peer, identity: id.spiffeId, pod: `${id.namespace}/${id.pod}`, services });
      return this.pump(s);
    }
    if (!s.sub) return this.fail(s, grpc.status.FAILED_PRECONDITION, 'the first message must be subscribe');
    if ('ack' in req && req.ack) {
      const f = s.inflight;
      if (!f || req.ack.nonce !== f.nonce) return; // stale or unknown: ignore (xDS semantics)
      s.ackedSeq = f.seq;
      s.ackedVersion = f.version;
      s.ackedView = f.view;
      if (f.policyJson !== null) s.ackedPolicyJson = f.policyJson;
      s.inflight = null;
      s.forceFull = false;
      if (!f.full) this.o.metrics.pushLatency.observe(Math.max(0, this.o.clock.now() - f.committedAt) / 1000);
      return this.pump(s);
    }
    if ('nack' in req && req.nack) {
      const f = s.inflight;
      if (!f || req.nack.nonce !== f.nonce) return;
      s.inflight = null;
      s.nacks++;
      s.lastNack = { version: f.version, detail: req.nack.errorDetail, at: this.o.clock.now() };
      this.o.metrics.nacks.inc();
      this.o.logger.warn('proxy NACKed a discovery response', {
        id: s.id, identity: s.sub.identity.spiffeId, version: f.version, ackedVersion: s.ackedVersion, detail: req.nack.errorDetail, resync: req.nack.resync,
      });
      if (req.nack.resync) {
        s.forceFull = true;
        return this.pump(s);
      }
      s.nackedSeq = f.seq;
      return;
    }
    if ('health' in req && req.health) {
      s.ejections = Object.freeze([...(req.health.ejected ?? [])]);
    }
  }

  private pump(s: Subscriber): void {
    if (s.closed || !s.sub || s.inflight || !this.o.store.ready) return;
    const view = this.o.store.view;
    if (view.seq === s.ackedSeq || view.seq <= s.nackedSeq) return;
    const entry = this.entryFor(s, view);
    const policyJson = this.policies.jsonFor(view.policy, s.sub.identity);
    const withPolicy = entry.full || policyJson !== s.ackedPolicyJson;
    if (!withPolicy && (!entry.bytes || !entry.response)) return;
    let bytes: Buffer;
    let response: DiscoveryResponse;
    if (!withPolicy) {
      bytes = entry.bytes!;
      response = entry.response!;
    } else if (entry.bytes && entry.response) {
      let b = entry.withPolicy.get(policyJson);
      if (!b) entry.withPolicy.set(policyJson, (b = Buffer.concat([entry.bytes, encodePolicySuffix(policyJson)])));
      bytes = b;
      response = { ...entry.response, inboundPolicy: { policyJson } };
    } else {
      // Only the policy changed for this subscriber: an otherwise empty delta.
      response = { version: view.version, nonce: entry.nonce, full: false, baseVersion: s.ackedVersion, services: [], removedServices: [], endpointDeltas: [], inboundPolicy: { policyJson } };
      bytes = loadDiscoveryProto().encodeResponse(response);
    }
    s.inflight = { ...entry, sentAt: this.o.clock.now(), policyJson: withPolicy ? policyJson : null };
    s.call.write(bytes);
    const kind = entry.full ? 'full' : 'delta';
    this.o.metrics.pushes.inc({ kind });
    this.o.metrics.pushedBytes.inc({ kind }, bytes.length);
    if (this.pushListeners.size > 0) {
      const rec: PushRecord = { subscriber: s.id, identity: s.sub.identity.spiffeId, version: entry.version, full: entry.full, bytes: bytes.length, response };
      for (const l of this.pushListeners) l(rec);
    }
  }

  private entryFor(s: Subscriber, view: StoreView): Entry {
    if (this.cacheSeq !== view.seq) {
      this.cache.clear();
      this.cacheSeq = view.seq;
    }
    const changed = s.forceFull || s.ackedSeq < 0 ? null : this.o.store.changedSince(s.ackedSeq);
    const full = changed === null;
    const key = `${s.filterId}|${full ? 'full' : s.ackedSeq}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const to = s.filter ? subset(view.services, s.filter) : view.services;
    let response: DiscoveryResponse | null;
    const nonce = full ? `f${view.seq}` : `${s.ackedSeq}-${view.seq}`;
    if (full) response = fullResponse(view.version, nonce, to.values());
    else {
      const keys = s.filter ? [...changed].filter((k) => s.filter?.has(k)) : changed;
      const d = diffViews(s.ackedView, to, keys);
      response = isEmptyDelta(d) ? null : { version: view.version, nonce, full: false, baseVersion: s.ackedVersion, ...d };
    }
    const entry: Entry = {
      seq: view.seq, version: view.version, committedAt: view.committedAt, nonce, view: to, full,
      response, bytes: response ? loadDiscoveryProto().encodeResponse(response) : null, withPolicy: new Map(),
    };
    this.cache.set(key, entry);
    return entry;
  }
}

function subset(all: ReadonlyMap<string, Service>, keys: ReadonlySet<string>): Map<string, Service> {
  const out = new Map<string, Service>();
  for (const k of keys) {
    const s = all.get(k);
    if (s) out.set(k, s);
  }
  return out;
}
