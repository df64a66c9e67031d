import type * as grpc from '@grpc/grpc-js';
import type { Proxy } from '../proxy.js';
import { DiscoveryClient } from './discovery-client.js';

export interface ConnectControlPlaneOptions {
  /** host:port of the control plane's discovery endpoint (the proxy config's `discovery.controlPlane`). */
  readonly address: string;
  /** The proxy's namespace and pod, sent in Subscribe (shown on the control plane's /debug/proxies). */
  readonly namespace: string;
  readonly pod: string;
  /** The workload's labels, for policy selectors (default: the proxy config's identity.labels). The control plane prefers the Pod's own labels when it watches pods. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Service keys "name.namespace" to watch; empty or absent = all. */
  readonly services?: readonly string[];
  /** Reconnect backoff (default 100 ms -> 5 s with jitter; see DiscoveryClient). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Insecure by default; mTLS credentials later. */
  readonly credentials?: grpc.ChannelCredentials;
}

/**
 * Subscribes a running proxy to the control plane and returns the started client.
 *
 * Each accepted version is applied with `proxy.applySnapshot` (route table and clusters
 * swapped together); if that throws, the client NACKs it and the proxy keeps its last
 * good config. Static stability comes from the client: a lost stream never changes the
 * config, the last good snapshot stays until a new stream delivers a valid one.
 *
 * The proxy's passive-health ejections are not reported (`HealthReport`) yet: the proxy
 * exposes them only through its admin `/clusters` rendering, not as a cheap event source.
 *
 * The caller stops the client (`await client.stop()`) when the proxy shuts down.
 */
export function connectControlPlane(proxy: Proxy, opts: ConnectControlPlaneOptions): DiscoveryClient {
  const client = new DiscoveryClient({
    address: opts.address,
    identity: { spiffeId: proxy.tls.spiffeId, namespace: opts.namespace, pod: opts.pod, labels: opts.labels ?? proxy.config.identity.labels },
    services: opts.services,
    clock: proxy.clock,
    random: proxy.random,
    logger: proxy.logger.child({ component: 'discovery', controlPlane: opts.address }),
    backoff: opts.backoff,
    credentials: opts.credentials,
    apply: (snapshot) => proxy.applySnapshot(snapshot),
  });
  client.start();
  return client;
}
