import type { Clock } from '../../common/clock.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import { bucketMemory, type BucketMemory } from '../ratelimit/shared-buckets.js';
import { counterMemory, type CounterMemory } from '../resilience/shared-counters.js';
import { admissionMemory, type AdmissionMemory } from '../net/shared-admission.js';
import { outlierMemory, type OutlierMemory } from '../resilience/shared-outliers.js';

/**
 * The limits the listener workers hold together (config `concurrency` > 1): the
 * RateLimitPolicy token buckets, the clusters' concurrency counters and the listener
 * limits (connections per listener, requests per caller to the app), in
 * SharedArrayBuffers that the main thread makes once, at start, and hands to every
 * worker in its WorkerData (a restarted worker gets the same memory). They are keyed by
 * name (policy and bucket, cluster), not by snapshot, so a snapshot that changes a
 * cluster's limits or a policy's other fields keeps the counts and tokens already there.
 * Outlier detection's per-endpoint state (consecutive counters, success-rate buckets,
 * ejections) is here too, so an ejection is the sidecar's (shared-outliers.ts). What stays
 * per worker: connection pools, EWMA, breakers, health checks (docs/configuration.md,
 * concurrency).
 */
export interface SharedLimitsMemory {
  readonly buckets: BucketMemory;
  readonly counters: CounterMemory;
  readonly admission: AdmissionMemory;
  readonly outliers: OutlierMemory;
}

export function sharedLimitsMemory(config: ProxyConfig, clock: Clock): SharedLimitsMemory {
  return { buckets: bucketMemory(config.limits.rateLimitIdentityBuckets, clock, true), counters: counterMemory(config.concurrency, true), admission: admissionMemory(config.concurrency, true), outliers: outlierMemory(true) };
}
