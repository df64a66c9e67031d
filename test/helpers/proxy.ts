import { Proxy } from '../../proxy/proxy.js';
import { parseProxyConfig } from '../../proxy/config/proxy-config.js';
import { TlsIdentity } from '../../proxy/tls/tls-identity.js';
import { parseService } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import { createLogger } from '../../common/logger.js';
import type { TestPki } from './pki.js';
import type { ClusterFactory } from '../../proxy/outbound/cluster-set.js';
import { connectControlPlane } from '../../proxy/discovery/connect-proxy.js';
import type { DiscoveryClient } from '../../proxy/discovery/discovery-client.js';

export interface StartProxyOptions {
  readonly pki: TestPki;
  readonly namespace?: string;
  readonly serviceAccount: string;
  readonly services?: readonly Service[];
  /** Extra raw config merged over the defaults (same spelling as the YAML file). */
  readonly config?: Record<string, unknown>;
  readonly clusterFactory?: ClusterFactory;
  readonly logs?: string[];
  /** Stands in for SO_ORIGINAL_DST (the netns test exercises the real one). */
  readonly originalDst?: (s: import('node:net').Socket) => { address: string; port: number } | undefined;
  /** Stands in for SO_ORIGINAL_DST on the inbound listener (plaintext connections on PERMISSIVE ports). */
  readonly inboundOriginalDst?: (s: import('node:net').Socket) => { address: string; port: number } | undefined;
  /** Workload labels sent in Subscribe (policy selectors). */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * host:port of a control plane: the proxy subscribes to it (connectControlPlane) instead
   * of getting `services` applied, so /ready stays 503 until its first snapshot. The
   * client stops when the proxy closes; `onDiscovery` receives it.
   */
  readonly controlPlane?: string;
  readonly discoveryBackoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Pod name sent in Subscribe (default `<serviceAccount>-0`): replicas of one workload need distinct ones. */
  readonly pod?: string;
  readonly onDiscovery?: (client: DiscoveryClient) => void;
  /** Where the proxy writes its access log lines (default: its stdout). */
  readonly accessLog?: import('node:stream').Writable;
  /** The proxy's clock (default the system's): a test that must not depend on the machine's pace stops time. */
  readonly clock?: import('../../common/clock.js').Clock;
}

/**
 * How HTTP/1.1 goes between the test sidecars: WREN_TEST_MESH_HTTP1=h1|mux|h2 runs a suite
 * with that `protocol.meshHttp1` (a test's own config still wins), so the integration
 * suites can be run against both transports (docs/configuration.md, Between sidecars).
 */
export const TEST_MESH_HTTP1 = process.env['WREN_TEST_MESH_HTTP1'];
/** The same for HTTP/2 and gRPC: WREN_TEST_MESH_HTTP2=mux|h2 sets `protocol.meshHttp2`. */
const TEST_MESH_HTTP2 = process.env['WREN_TEST_MESH_HTTP2'];
/**
 * WREN_TEST_APP_HTTP2=frames|node runs a suite with Wren's frame-level HTTP/2 on both sides
 * toward the app (`protocol.appHttp2`, the inbound's client, and `protocol.outboundHttp2`,
 * the outbound's server for the app's h2c) or with node:http2 on both.
 */
const TEST_APP_HTTP2 = process.env['WREN_TEST_APP_HTTP2'];

/** A real sidecar on loopback with every port 0; logs are captured, not printed. */
export async function startProxy(o: StartProxyOptions): Promise<Proxy> {
  const ns = o.namespace ?? 'default';
  const own = o.config ?? {};
  const raw = {
    identity: { namespace: ns, serviceAccount: o.serviceAccount, trustDomain: o.pki.trustDomain },
    tls: { certFile: '(in memory)', keyFile: '(in memory)', trustBundleFile: '(in memory)' },
    shutdown: { gracePeriodMs: 5000 },
    // A captured access log is written at the next timer turn instead of after the default
    // 1 s (accessLogFlush, docs/observability.md): the suites read a request's line right
    // after it ends. The default's batching is proxy/layers/access-log.test.ts's.
    ...(o.accessLog ? { accessLogFlush: { intervalMs: 0 } } : {}),
    ...own,
    // A test's own listeners replace these one by one (the metrics port stays on loopback port 0 unless named).
    listeners: {
      outbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, inbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 },
      ...((own['listeners'] as Record<string, unknown> | undefined) ?? {}),
    },
    ...(TEST_MESH_HTTP1 || TEST_MESH_HTTP2 || TEST_APP_HTTP2
      ? {
          protocol: {
            ...(TEST_MESH_HTTP1 ? { meshHttp1: TEST_MESH_HTTP1 } : {}),
            ...(TEST_MESH_HTTP2 ? { meshHttp2: TEST_MESH_HTTP2 } : {}),
            ...(TEST_APP_HTTP2 ? { appHttp2: TEST_APP_HTTP2, outboundHttp2: TEST_APP_HTTP2 } : {}),
            ...((own['protocol'] as Record<string, unknown> | undefined) ?? {}),
          },
        }
      : {}),
  };
  const config = parseProxyConfig(raw, 'test');
  const tls = new TlsIdentity(o.pki.issue(ns, o.serviceAccount));
  const sink = o.logs ? (l: string) => void o.logs!.push(l) : () => undefined;
  const proxy = await Proxy.start({
    config,
    tls,
    logger: createLogger({ level: 'debug', sink }),
    clusterFactory: o.clusterFactory,
    originalDst: o.originalDst,
    inboundOriginalDst: o.inboundOriginalDst,
    staticMesh: false,
    accessLogSink: o.accessLog,
    clock: o.clock,
  });
  if (o.controlPlane) {
    const client = connectControlPlane(proxy, { address: o.controlPlane, namespace: ns, pod: o.pod ?? `${o.serviceAccount}-0`, backoff: o.discoveryBackoff, labels: o.labels });
    void proxy.drained.then(() => client.stop());
    o.onDiscovery?.(client);
    return proxy;
  }
  proxy.applySnapshot({ version: '1', source: 'test', services: o.services ?? [] });
  return proxy;
}

/** A mesh service whose endpoints are the given apps behind the given sidecars. */
export function meshService(
  name: string,
  port: number,
  backends: readonly { appPort: number; proxy: Proxy | null; ready?: boolean; weight?: number; workload?: { name: string; app?: string; version?: string } }[],
  extra: Record<string, unknown> = {},
): Service {
  return parseService(
    {
      name,
      namespace: 'default',
      ports: [
        {
          port,
          protocol: (extra.protocol as string) ?? 'detect',
          endpoints: backends.map((b) => ({
            address: '127.0.0.1',
            port: b.appPort,
            proxyPort: b.proxy ? b.proxy.inboundPort : null,
            identity: b.proxy ? b.proxy.tls.spiffeId : undefined,
            ready: b.ready ?? true,
            weight: b.weight ?? 1,
            // As the control plane fills it from the pod (contract Endpoint.workload).
            ...(b.workload ? { workload: { namespace: 'default', ...b.workload } } : {}),
          })),
        },
      ],
      ...(extra.policy ? { policy: extra.policy } : {}),
      ...(extra.clusterIPs ? { clusterIPs: extra.clusterIPs } : {}),
    },
    'test',
  );
}

/** A client sidecar and a `web` sidecar in front of the app on `appPort` (service web:80), the pair most data-path tests need. */
export async function startPair(
  pki: TestPki,
  appPort: number,
  o: { readonly serverConfig?: Record<string, unknown>; /** The service (and the server's service account); default `web`. */ readonly service?: string } = {},
): Promise<{ readonly client: Proxy; readonly server: Proxy; close(): Promise<void> }> {
  const name = o.service ?? 'web';
  const server = await startProxy({ pki, serviceAccount: name, config: o.serverConfig });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService(name, 80, [{ appPort, proxy: server }])] });
  return {
    client,
    server,
    async close() {
      await client.close();
      await server.close();
    },
  };
}
