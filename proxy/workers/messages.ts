import type { MeshSnapshot } from '../../contract/model.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { TlsMaterial } from '../tls/tls-identity.js';
import type { Level } from '../../common/logger.js';
import type { RecentDecisions } from '../stats/recent-decisions.js';
import type { SharedLimitsMemory } from './shared-limits.js';

/**
 * What the main thread and a listener worker say to each other (postMessage, structured
 * clone). Key material crosses only here, inside the process: worker threads share the
 * pod's process, so "keys never leave the pod" holds and nothing is written to disk.
 */
export interface WorkerData {
  readonly id: number;
  /** The proxy's config with every data-path port resolved (worker 0 binds port 0 first, the others join its ports). */
  readonly config: ProxyConfig;
  readonly material: TlsMaterial;
  /** The latest snapshot the main thread holds, so a restarted worker serves it from the start. */
  readonly snapshot: { readonly seq: number; readonly snapshot: MeshSnapshot } | null;
  readonly logLevel: Level;
  /** The rate-limit buckets and cluster counters every worker shares (SharedArrayBuffers: posting shares, not copies). */
  readonly shared: SharedLimitsMemory;
}

export type ToWorker =
  | { readonly t: 'snapshot'; readonly seq: number; readonly snapshot: MeshSnapshot }
  | { readonly t: 'rotate'; readonly material: TlsMaterial }
  | { readonly t: 'metrics'; readonly id: number }
  /** Its recent authorization denials and retries, for the StatsReport (the dashboard's "why" view). */
  | { readonly t: 'decisions'; readonly id: number }
  /** Its clusters' current state, for GET /clusters (asked for when the admin port is asked). */
  | { readonly t: 'clusters'; readonly id: number }
  | { readonly t: 'log-level'; readonly level: Level }
  /** Another worker ejected or unejected `endpoint` of `cluster` for the sidecar (shared-outliers.ts): follow it. */
  | { readonly t: 'outlier'; readonly cluster: string; readonly endpoint: string }
  /** minDrainMs: the signal's minimum drain (Proxy.quiesce), 0 for POST /drain. */
  | { readonly t: 'drain'; readonly minDrainMs: number }
  | { readonly t: 'close' };

export interface WorkerPorts {
  readonly outbound: number;
  readonly inbound: number;
  /** Per configured upstream, in config order. */
  readonly upstreams: readonly number[];
}

export type FromWorker =
  | { readonly t: 'listening'; readonly ports: WorkerPorts }
  | { readonly t: 'start-failed'; readonly listener: string; readonly address: string; readonly port: number; readonly code: string | undefined; readonly message: string }
  | { readonly t: 'applied'; readonly seq: number }
  | { readonly t: 'apply-failed'; readonly seq: number; readonly error: string }
  | { readonly t: 'metrics'; readonly id: number; readonly json: unknown }
  | { readonly t: 'decisions'; readonly id: number; readonly decisions: RecentDecisions }
  | { readonly t: 'clusters'; readonly id: number; readonly clusters: Record<string, unknown> }
  /** Its clusters' state after a health change (and once at start): what the HealthReport is built from. */
  | { readonly t: 'health'; readonly clusters: Record<string, unknown> }
  | { readonly t: 'log'; readonly line: string }
  /** It ejected or unejected `endpoint` of `cluster` for the sidecar: relayed to the other workers. */
  | { readonly t: 'outlier'; readonly cluster: string; readonly endpoint: string }
  /** Its drain is done (nothing in flight, or the grace period is over); it closes when told to. */
  | { readonly t: 'drained' }
  | { readonly t: 'closed' };
