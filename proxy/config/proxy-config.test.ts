import { ConfigError } from '../../common/schema.js';
import { MAX_SUBSCRIBE_SERVICES } from '../../contract/subscribe-limits.js';
import { hasProxyEnv, parseProxyConfig, proxyConfigFromEnv, tlsFilesOf } from './proxy-config.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const files = { certFile: 'a.crt', keyFile: 'a.key', trustBundleFile: 'ca.crt' };

function problem(raw: unknown): string {
  try {
    parseProxyConfig(raw, 'cfg');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}


/** The message proxyConfigFromEnv refuses `e` with ('' when it takes it); always a ConfigError. */
function envError(e: Record<string, string | undefined>): string {
  try {
    proxyConfigFromEnv(e);
    return '';
  } catch (x) {
    expect(x).toBeInstanceOf(ConfigError);
    return (x as Error).message;
  }
}

describe('certificate source', () => {
  test('tls files, as before', () => {
    const c = parseProxyConfig({ tls: files });
    expect(tlsFilesOf(c)).toEqual(files);
    expect(c.identity.certify).toBeUndefined();
    expect(c.identity.labels).toEqual({});
  });

  test('identity.certify: defaults from discovery and the trust domain', () => {
    const c = parseProxyConfig({
      identity: { trustDomain: 'example.org', labels: { app: 'web', tier: 'front' }, certify: { tokenFile: '/t', trustBundleFile: '/b.pem', lifetimeMs: '1h' } },
      discovery: { controlPlane: 'cp.example:15010' },
    });
    expect(tlsFilesOf(c)).toBeNull();
    expect(c.tls).toEqual({});
    expect(c.identity.labels).toEqual({ app: 'web', tier: 'front' });
    expect(c.identity.certify).toEqual({
      controlPlane: 'cp.example:15010',
      tokenFile: '/t',
      trustBundleFile: '/b.pem',
      trustBundlePem: undefined,
      lifetimeMs: 3_600_000,
      runDir: undefined,
      timeoutMs: 10_000,
      startupTimeoutMs: 60_000,
    });
    expect(c.discovery).toMatchObject({ insecure: false, controlPlaneIdentity: 'spiffe://example.org/ns/wren-system/sa/wren-control-plane', services: [] });
    expect(parseProxyConfig({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t' } }, discovery: { insecure: true } }).identity.certify?.controlPlane).toBe('x:1');
  });

  test('discovery.healthReport.connectFailures: default 2, 0 turns it off, field-path errors', () => {
    expect(parseProxyConfig({ tls: files }).discovery.healthReport).toEqual({ connectFailures: 2 });
    expect(parseProxyConfig({ tls: files, discovery: { healthReport: { connectFailures: 0 } } }).discovery.healthReport).toEqual({ connectFailures: 0 });
    expect(problem({ tls: files, discovery: { healthReport: { connectFailures: 1.5 } } })).toBe('cfg: discovery.healthReport.connectFailures: expected an integer in 0..16, got 1.5');
    expect(problem({ tls: files, discovery: { healthReport: { connectFailures: 17 } } })).toBe('cfg: discovery.healthReport.connectFailures: expected a number in 0..16, got 17');
    expect(problem({ tls: files, discovery: { healthReport: { connectFailure: 3 } } })).toMatch(/^cfg: discovery\.healthReport\.connectFailure: unknown field/);
  });

  test('discovery.statsReport: default every 10 s with at most 200 edges, 0 s turns it off, field-path errors', () => {
    expect(parseProxyConfig({ tls: files }).discovery.statsReport).toEqual({ intervalMs: 10_000, maxEdges: 200 });
    expect(parseProxyConfig({ tls: files, discovery: { statsReport: { intervalMs: '0s', maxEdges: 5 } } }).discovery.statsReport).toEqual({ intervalMs: 0, maxEdges: 5 });
    expect(problem({ tls: files, discovery: { statsReport: { maxEdges: 0 } } })).toMatch(/^cfg: discovery\.statsReport\.maxEdges: /);
    expect(problem({ tls: files, discovery: { statsReport: { intervalMs: 'soon' } } })).toMatch(/^cfg: discovery\.statsReport\.intervalMs: /);
    // Faster than the control plane takes reports (5 a second per stream): refused, not dropped there (adv29).
    expect(problem({ tls: files, discovery: { statsReport: { intervalMs: '10ms' } } })).toBe('cfg: discovery.statsReport.intervalMs: expected 0 (never) or at least 200ms (what the control plane takes, at most 5 reports a second), got 10 ms');
    expect(parseProxyConfig({ tls: files, discovery: { statsReport: { intervalMs: '200ms' } } }).discovery.statsReport.intervalMs).toBe(200);
  });

  test('protocol.detectTimeoutMs: at least 100 ms; 0 (a timer firing at once: every plaintext client judged silent, spliced unparsed) is refused with its field path', () => {
    expect(parseProxyConfig({ tls: files }, 'cfg').protocol.detectTimeoutMs).toBe(1000);
    expect(parseProxyConfig({ tls: files, protocol: { detectTimeoutMs: '100ms' } }, 'cfg').protocol.detectTimeoutMs).toBe(100);
    expect(problem({ tls: files, protocol: { detectTimeoutMs: 0 } })).toMatch(/^cfg: protocol\.detectTimeoutMs: expected at least 100ms .*got 0 ms$/);
    expect(problem({ tls: files, protocol: { detectTimeoutMs: '0s' } })).toMatch(/^cfg: protocol\.detectTimeoutMs: expected at least 100ms/);
    expect(problem({ tls: files, protocol: { detectTimeoutMs: 99 } })).toMatch(/^cfg: protocol\.detectTimeoutMs: /);
  });

  test('exactly one of tls and identity.certify, with field-path errors', () => {
    expect(problem({})).toBe('cfg: tls: required: either tls (certFile, keyFile, trustBundleFile) or identity.certify');
    expect(problem({ tls: files, identity: { certify: { controlPlane: 'x:1', tokenFile: '/t' } }, discovery: { insecure: true } })).toMatch(/^cfg: identity\.certify: set either tls/);
    expect(problem({ identity: { certify: { tokenFile: '/t' } }, discovery: { insecure: true } })).toBe('cfg: identity.certify.controlPlane: required when discovery.controlPlane is not set');
    expect(problem({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t' } } })).toMatch(/^cfg: identity\.certify\.trustBundleFile: required/);
    expect(problem({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t', trustBundleFile: 'f', trustBundlePem: PEM } } })).toMatch(/trustBundlePem: set trustBundleFile or trustBundlePem, not both/);
    expect(problem({ identity: { certify: { controlPlane: 'x:1', trustBundlePem: PEM } } })).toBe('cfg: identity.certify.tokenFile: expected a string, got undefined');
    expect(problem({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t', trustBundlePem: 'nope' } } })).toMatch(/identity\.certify\.trustBundlePem: expected to match/);
    expect(problem({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t', lifetimeMs: '10ms' } }, discovery: { insecure: true } })).toMatch(/identity\.certify\.lifetimeMs: expected at least 1s/);
    expect(problem({ identity: { certify: { controlPlane: 'x:1', tokenFile: '/t', tokenPath: '/x' } }, discovery: { insecure: true } })).toMatch(/identity\.certify\.tokenPath: unknown field/);
    expect(problem({ tls: files, identity: { labels: { app: 7 } } })).toBe('cfg: identity.labels.app: expected a string, got 7');
  });

  test('discovery.services: the egress scope, service keys "name.namespace"', () => {
    expect(parseProxyConfig({ tls: files, discovery: { services: ['web.shop', 'redis.data'] } }).discovery.services).toEqual(['web.shop', 'redis.data']);
    expect(problem({ tls: files, discovery: { services: ['web'] } })).toMatch(/^cfg: discovery\.services\[0\]: expected to match/);
    expect(problem({ tls: files, discovery: { services: 'web.shop' } })).toMatch(/^cfg: discovery\.services: expected/);
    // More than the control plane takes in a Subscribe (MAX_SUBSCRIBE_SERVICES): refused here, not by the control plane on every reconnect.
    const keys = (n: number) => Array.from({ length: n }, (_, i) => `s${i}.shop`);
    expect(parseProxyConfig({ tls: files, discovery: { services: keys(MAX_SUBSCRIBE_SERVICES) } }).discovery.services).toHaveLength(MAX_SUBSCRIBE_SERVICES);
    expect(problem({ tls: files, discovery: { services: keys(MAX_SUBSCRIBE_SERVICES + 1) } })).toBe(`cfg: discovery.services: expected at most ${MAX_SUBSCRIBE_SERVICES} items, got ${MAX_SUBSCRIBE_SERVICES + 1}`);
  });
});

describe('in-cluster mode (the injector environment)', () => {
  const env = {
    POD_NAME: 'web-7d9',
    POD_NAMESPACE: 'shop',
    POD_IP: '10.0.0.7',
    WREN_SERVICE_ACCOUNT: 'web',
    WREN_TRUST_DOMAIN: 'cluster.local',
    WREN_CONTROL_PLANE: 'wren-control-plane.wren-system.svc:15010',
    WREN_TRUST_BUNDLE: PEM,
    WREN_TOKEN_FILE: '/var/run/secrets/wren.io/identity/token',
    WREN_RUN_DIR: '/var/run/wren',
    WREN_LOG_LEVEL: 'debug',
    WREN_INBOUND_PORT: '15006',
    WREN_OUTBOUND_PORT: '15001',
    WREN_ADMIN_PORT: '15000',
  };

  test('builds the whole config from the environment', () => {
    expect(hasProxyEnv(env)).toBe(true);
    expect(hasProxyEnv({})).toBe(false);
    const c = proxyConfigFromEnv(env);
    expect(c.identity).toMatchObject({ namespace: 'shop', serviceAccount: 'web', pod: 'web-7d9', trustDomain: 'cluster.local', labels: {} });
    expect(c.identity.certify).toMatchObject({
      controlPlane: 'wren-control-plane.wren-system.svc:15010', tokenFile: env.WREN_TOKEN_FILE, trustBundlePem: PEM, runDir: '/var/run/wren',
    });
    // Inbound traffic to the pod IP (Istio's INSTANCE_IP), so localhost-only ports stay private to the pod.
    expect(c.app.address).toBe('10.0.0.7');
    expect(proxyConfigFromEnv({ ...env, POD_IP: undefined }).app.address).toBe('127.0.0.1');
    expect(c.discovery).toMatchObject({ controlPlane: env.WREN_CONTROL_PLANE, insecure: false, controlPlaneIdentity: 'spiffe://cluster.local/ns/wren-system/sa/wren-control-plane' });
    expect(proxyConfigFromEnv({ ...env, WREN_CONTROL_PLANE_IDENTITY: 'spiffe://cluster.local/ns/mesh/sa/wren-control-plane' }).discovery.controlPlaneIdentity).toBe('spiffe://cluster.local/ns/mesh/sa/wren-control-plane');
    expect(c.discovery.services).toEqual([]);
    expect(proxyConfigFromEnv({ ...env, WREN_EGRESS_SERVICES: 'web.shop, redis.data' }).discovery.services).toEqual(['web.shop', 'redis.data']);
    expect(() => proxyConfigFromEnv({ ...env, WREN_EGRESS_SERVICES: 'web' })).toThrow(/WREN_EGRESS_SERVICES/);
    expect(c.listeners).toEqual({ outbound: { address: '127.0.0.1', ipv6Address: '::1', port: 15001 }, inbound: { address: '0.0.0.0', ipv6Address: '::', port: 15006 }, admin: { address: '127.0.0.1', ipv6Address: '', port: 15000 },
      // The scrape port on every address, as Istio's 15020 (Prometheus scrapes the pod IP).
      metrics: { enabled: true, address: '0.0.0.0', ipv6Address: '::', port: 15020 },
    });
    expect(proxyConfigFromEnv({ ...env, WREN_METRICS_PORT: '9102' }).listeners.metrics.port).toBe(9102);
    expect(() => proxyConfigFromEnv({ ...env, WREN_METRICS_PORT: 'x' })).toThrow(/WREN_METRICS_PORT/);
    expect(c.log.level).toBe('debug');
    expect(tlsFilesOf(c)).toBeNull();
  });

  test('the workload for the metrics: WREN_WORKLOAD_* (the injector), app/version defaulting to the labels; bad values named', () => {
    const c = proxyConfigFromEnv({ ...env, WREN_WORKLOAD_NAME: 'web-v1', WREN_WORKLOAD_APP: 'web', WREN_WORKLOAD_VERSION: 'v1' });
    expect(c.identity.workload).toEqual({ name: 'web-v1', app: 'web', version: 'v1' });
    expect(proxyConfigFromEnv(env).identity.workload).toEqual({ name: '', app: '', version: '' });
    expect(() => proxyConfigFromEnv({ ...env, WREN_WORKLOAD_NAME: 'Web V1' })).toThrow(/WREN_WORKLOAD_NAME/);
    expect(() => proxyConfigFromEnv({ ...env, WREN_WORKLOAD_APP: 'a,b="c"' })).toThrow(/WREN_WORKLOAD_APP/);
    const base = { tls: { certFile: 'c', keyFile: 'k', trustBundleFile: 't' } };
    expect(parseProxyConfig({ ...base, identity: { labels: { 'app.kubernetes.io/name': 'shop', app: 'x', version: '2' } } }).identity.workload).toEqual({ name: '', app: 'shop', version: '2' });
  });

  test('errors name the environment variable', () => {
    expect(envError({ ...env, WREN_ADMIN_PORT: 'admin' })).toBe('environment: WREN_ADMIN_PORT: expected a number, got "admin"');
    expect(envError({ ...env, WREN_INBOUND_PORT: '70000' })).toBe('environment: WREN_INBOUND_PORT: expected a number in 0..65535, got 70000');
    expect(envError({ ...env, POD_NAMESPACE: 'Shop' })).toMatch(/^environment: POD_NAMESPACE: expected to match/);
    expect(envError({ ...env, WREN_LOG_LEVEL: 'loud' })).toMatch(/^environment: WREN_LOG_LEVEL: expected one of debug, info, warn, error/);
    expect(envError({ ...env, WREN_TOKEN_FILE: undefined })).toBe('environment: WREN_TOKEN_FILE: required (the injector sets it; see docs/identity.md)');
    expect(envError({ ...env, WREN_TRUST_BUNDLE: '' })).toMatch(/^environment: WREN_TRUST_BUNDLE: required/);
    expect(envError({ ...env, WREN_TRUST_BUNDLE: 'not a pem' })).toMatch(/^environment: WREN_TRUST_BUNDLE: expected to match/);
    expect(envError({ ...env, WREN_CONTROL_PLANE: 'no-port' })).toMatch(/^environment: WREN_CONTROL_PLANE: expected to match/);
    expect(envError({ ...env, WREN_CONTROL_PLANE_INSECURE: 'yes' })).toBe('environment: WREN_CONTROL_PLANE_INSECURE: expected true or false, got "yes"');
    expect(envError({ ...env, WREN_TRUST_BUNDLE: undefined, WREN_CONTROL_PLANE_INSECURE: 'true' })).toBe('');
  });

  test('WREN_APP_PROBES (the injector\'s rewritten kubelet probes): parsed once into typed probes; a bad value stops start-up naming the variable and the field', () => {
    expect(proxyConfigFromEnv(env).appProbes.size).toBe(0);
    const probes = proxyConfigFromEnv({ ...env, WREN_APP_PROBES: JSON.stringify({ '/app-health/web/readyz': { kind: 'http', port: 8080, path: '/healthz', scheme: 'HTTP', timeoutSeconds: 2 }, '/app-health/web/livez': { kind: 'tcp', port: 8080, timeoutSeconds: 1 } }) }).appProbes;
    expect([...probes]).toEqual([
      ['/app-health/web/readyz', { kind: 'http', port: 8080, path: '/healthz', scheme: 'HTTP', headers: [], timeoutMs: 2000 }],
      ['/app-health/web/livez', { kind: 'tcp', port: 8080, timeoutMs: 1000 }],
    ]);
    expect(envError({ ...env, WREN_APP_PROBES: '{"/app-health/web/readyz":' })).toMatch(/^environment: WREN_APP_PROBES: expected JSON: invalid JSON( at position \d+)?$/);
    // The text is not quoted back (a probe's header may carry a credential).
    expect(envError({ ...env, WREN_APP_PROBES: '{"x":{"httpHeaders":[{"value":"Bearer SECRETPART' })).not.toContain('SECRETPART');
    expect(envError({ ...env, WREN_APP_PROBES: '{"/app-health/web/readyz":{"kind":"tcp","port":"http"}}' })).toBe('environment: WREN_APP_PROBES: ["/app-health/web/readyz"].port: expected a number, got "http"');
    expect(envError({ ...env, WREN_APP_PROBES: '[1]' })).toMatch(/^environment: WREN_APP_PROBES: expected an object keyed by/);
    // The config file spells the same object `appProbes`.
    expect(parseProxyConfig({ tls: files, appProbes: { '/app-health/a/startupz': { kind: 'grpc', port: 9090 } } }).appProbes.get('/app-health/a/startupz')).toEqual({ kind: 'grpc', port: 9090, service: '', timeoutMs: 1000 });
  });

  test('appProbes with listeners.metrics.enabled: false is refused, naming both fields: only the metrics port serves the probes', () => {
    const probes = { '/app-health/web/readyz': { kind: 'http', port: 8080, path: '/healthz' } };
    expect(problem({ tls: files, appProbes: probes, listeners: { metrics: { enabled: false } } })).toBe(
      'cfg: appProbes: the app probes are served on the metrics port, which listeners.metrics.enabled: false turns off: enable the metrics listener or remove appProbes',
    );
    // Either alone is fine.
    expect(parseProxyConfig({ tls: files, listeners: { metrics: { enabled: false } } }).appProbes.size).toBe(0);
    expect(parseProxyConfig({ tls: files, appProbes: probes }).listeners.metrics.enabled).toBe(true);
    expect(parseProxyConfig({ tls: files, appProbes: {}, listeners: { metrics: { enabled: false } } }).listeners.metrics.enabled).toBe(false);
  });
});

describe('upstreams (explicit local listeners, Consul-style)', () => {
  test('defaults: none; localAddress 127.0.0.1, protocol from the service; frozen', () => {
    expect(parseProxyConfig({ tls: files }).upstreams).toEqual([]);
    const c = parseProxyConfig({
      tls: files,
      upstreams: [
        { service: 'redis.data', port: 6379, localPort: 16379 },
        { service: 'web', port: 80, localPort: 18080, localAddress: '::1', protocol: 'http1' },
      ],
    });
    expect(c.upstreams).toEqual([
      { service: 'redis.data', port: 6379, localPort: 16379, localAddress: '127.0.0.1', protocol: undefined },
      { service: 'web', port: 80, localPort: 18080, localAddress: '::1', protocol: 'http1' },
    ]);
    expect(Object.isFrozen(c.upstreams)).toBe(true);
    expect(Object.isFrozen(c.upstreams[0])).toBe(true);
  });

  test('errors name the field path', () => {
    const raw = (u: Record<string, unknown>) => ({ tls: files, upstreams: [{ service: 'redis', port: 6379, localPort: 16379 }, u] });
    const up = (u: Record<string, unknown>) => problem(raw(u));
    expect(up({ service: 'Redis', port: 1, localPort: 2 })).toMatch(/^cfg: upstreams\[1\]\.service: expected to match/);
    expect(up({ service: 'a.b.c', port: 1, localPort: 2 })).toMatch(/^cfg: upstreams\[1\]\.service: expected to match/);
    expect(up({ service: 'web', localPort: 2 })).toBe('cfg: upstreams[1].port: expected a number, got undefined');
    expect(up({ service: 'web', port: 0, localPort: 2 })).toBe('cfg: upstreams[1].port: expected a number in 1..65535, got 0');
    expect(up({ service: 'web', port: 80 })).toBe('cfg: upstreams[1].localPort: expected a number, got undefined');
    expect(up({ service: 'web', port: 80, localPort: 2, localAddress: 'localhost' })).toBe('cfg: upstreams[1].localAddress: expected an IP address, got "localhost"');
    expect(up({ service: 'web', port: 80, localPort: 2, protocol: 'tcp' })).toMatch(/^cfg: upstreams\[1\]\.protocol: expected one of opaque, http1, http2, grpc/);
    expect(up({ service: 'web', port: 80, localPort: 2, destination_name: 'web' })).toMatch(/^cfg: upstreams\[1\]\.destination_name: unknown field/);
    expect(up({ service: 'web', port: 80, localPort: 16379 })).toBe("cfg: upstreams[1].localPort: 127.0.0.1:16379 is already upstreams[0]'s");
    expect(parseProxyConfig(raw({ service: 'web', port: 80, localPort: 16379, localAddress: '127.0.0.2' })).upstreams[1].localAddress).toBe('127.0.0.2');
    expect(up({ service: 'web', port: 80, localPort: 15000 })).toBe("cfg: upstreams[1].localPort: 127.0.0.1:15000 is already listeners.admin's");
    expect(up({ service: 'web', port: 80, localPort: 15006, localAddress: '127.0.0.5' })).toBe("cfg: upstreams[1].localPort: 127.0.0.5:15006 is already listeners.inbound's");
    // The metrics port binds every address (Istio's 15020) unless turned off.
    expect(up({ service: 'web', port: 80, localPort: 15020 })).toBe("cfg: upstreams[1].localPort: 127.0.0.1:15020 is already listeners.metrics's");
    expect(parseProxyConfig({ ...raw({ service: 'web', port: 80, localPort: 15020 }), listeners: { metrics: { enabled: false } } }).listeners.metrics.enabled).toBe(false);
  });
});

describe('protocol.meshHttp1 (HTTP/1.1 between sidecars)', () => {
  test('defaults, values, and errors naming the field path', () => {
    const p = parseProxyConfig({ tls: files }).protocol;
    expect(p.meshHttp1).toBe('mux');
    expect(p.meshHttp1MaxConnectionsPerPeer).toBe(256);
    expect(parseProxyConfig({ tls: files, protocol: { meshHttp1: 'h1', meshHttp1MaxConnectionsPerPeer: 8 } }).protocol).toMatchObject({ meshHttp1: 'h1', meshHttp1MaxConnectionsPerPeer: 8 });
    expect(parseProxyConfig({ tls: files, protocol: { meshHttp1: 'h2' } }).protocol.meshHttp1).toBe('h2');
    expect(problem({ tls: files, protocol: { meshHttp1: 'http/1.1' } })).toMatch(/^cfg: protocol\.meshHttp1: expected one of h1, h2, mux/);
    expect(problem({ tls: files, protocol: { meshHttp1MaxConnectionsPerPeer: 0 } })).toContain('protocol.meshHttp1MaxConnectionsPerPeer');
  });
});

describe('protocol.meshHttp2 (HTTP/2 and gRPC between sidecars)', () => {
  test('mux by default, h2 on request, and an error naming the field path', () => {
    expect(parseProxyConfig({ tls: files }).protocol.meshHttp2).toBe('mux');
    expect(parseProxyConfig({ tls: files, protocol: { meshHttp2: 'h2' } }).protocol.meshHttp2).toBe('h2');
    expect(problem({ tls: files, protocol: { meshHttp2: 'h1' } })).toMatch(/^cfg: protocol\.meshHttp2: expected one of h2, mux/);
  });

  test('protocol.appHttp2: the frame-level client by default, node:http2 on request', () => {
    expect(parseProxyConfig({ tls: files }).protocol.appHttp2).toBe('frames');
    expect(parseProxyConfig({ tls: files, protocol: { appHttp2: 'node' } }).protocol.appHttp2).toBe('node');
    expect(problem({ tls: files, protocol: { appHttp2: 'nghttp2' } })).toMatch(/^cfg: protocol\.appHttp2: expected one of frames, node/);
  });
});

describe('abuse limits (docs/security.md)', () => {
  test('Envoy-like defaults', () => {
    const l = parseProxyConfig({ tls: files }).limits;
    expect(l).toMatchObject({
      requestHeadersTimeoutMs: 10_000,
      idleConnectionTimeoutMs: 3_600_000,
      streamIdleTimeoutMs: 300_000,
      delayedCloseTimeoutMs: 1000,
      maxConnectionsPerListener: 4096,
      prematureResets: { totalStreamCount: 500, minStreamLifetimeMs: 1000 },
      maxStreamsPerCaller: 100,
      peerKeepalive: { intervalMs: 10_000, timeoutMs: 5_000 },
    });
    expect(Object.isFrozen(l.prematureResets)).toBe(true);
  });

  test('durations parse; bad values name the field path', () => {
    expect(parseProxyConfig({ tls: files, limits: { requestHeadersTimeoutMs: '2s', streamIdleTimeoutMs: 0 } }).limits).toMatchObject({ requestHeadersTimeoutMs: 2000, streamIdleTimeoutMs: 0 });
    expect(problem({ tls: files, limits: { idleConnectionTimeoutMs: 'soon' } })).toContain('limits.idleConnectionTimeoutMs');
    expect(parseProxyConfig({ tls: files, limits: { delayedCloseTimeoutMs: '250ms' } }).limits.delayedCloseTimeoutMs).toBe(250);
    expect(parseProxyConfig({ tls: files, limits: { delayedCloseTimeoutMs: 0 } }).limits.delayedCloseTimeoutMs).toBe(0);
    expect(problem({ tls: files, limits: { delayedCloseTimeoutMs: -1 } })).toContain('limits.delayedCloseTimeoutMs');
    expect(problem({ tls: files, limits: { maxConnectionsPerListener: 0 } })).toContain('limits.maxConnectionsPerListener');
    expect(problem({ tls: files, limits: { prematureResets: { totalStreamCount: 1 } } })).toContain('limits.prematureResets.totalStreamCount');
    expect(problem({ tls: files, limits: { peerKeepalive: { every: '1s' } } })).toContain('limits.peerKeepalive.every');
  });

  test('HTTP/2 windows: 1 MiB per stream, 16 MiB per connection; outside RFC 9113 bounds named', () => {
    expect(parseProxyConfig({ tls: files }).limits).toMatchObject({ http2InitialStreamWindowBytes: 1 << 20, http2InitialConnectionWindowBytes: 16 << 20 });
    expect(parseProxyConfig({ tls: files, limits: { http2InitialStreamWindowBytes: 262_144 } }).limits.http2InitialStreamWindowBytes).toBe(262_144);
    expect(problem({ tls: files, limits: { http2InitialStreamWindowBytes: 1000 } })).toContain('limits.http2InitialStreamWindowBytes');
    expect(problem({ tls: files, limits: { http2InitialConnectionWindowBytes: 2 ** 31 } })).toContain('limits.http2InitialConnectionWindowBytes');
  });
});

describe('requestAuthn (JWT verification, docs/request-authentication.md)', () => {
  test('defaults: Envoy clock skew and JWKS cache, jose refetch cooldown, Istio fetch timeout, Envoy jwt_cache_size', () => {
    expect(parseProxyConfig({ tls: files }).requestAuthn).toEqual({
      clockSkewMs: 60_000, jwksRefreshMs: 300_000, jwksRetryMs: 10_000, jwksFetchTimeoutMs: 5_000, jwksMinRefetchIntervalMs: 30_000, jwksMaxBytes: 1 << 20, jwtCacheSize: 100,
    });
  });

  test('durations and the cache size parse; mistakes name the field', () => {
    expect(parseProxyConfig({ tls: files, requestAuthn: { clockSkewMs: '5s', jwtCacheSize: 0 } }).requestAuthn).toMatchObject({ clockSkewMs: 5_000, jwtCacheSize: 0 });
    expect(problem({ tls: files, requestAuthn: { jwtCacheSize: -1 } })).toContain('requestAuthn.jwtCacheSize');
    expect(problem({ tls: files, requestAuthn: { jwksRefresh: '1m' } })).toContain('requestAuthn.jwksRefresh: unknown field');
  });

  test('policy.jwtRules are validated with their path', () => {
    expect(problem({ tls: files, policy: { jwtRules: [{ issuer: 'https://a', jwksUri: 'https://a/k', jwksFile: '/k' }] } })).toContain('policy.jwtRules[0]: only one of');
  });
});

describe('shutdown (the drain after SIGTERM / POST /drain)', () => {
  test('minDrainMs defaults to 5 s (Istio\'s terminationDrainDuration), or the grace period when that is shorter', () => {
    expect(parseProxyConfig({ tls: files }).shutdown).toEqual({ gracePeriodMs: 30_000, minDrainMs: 5000 });
    expect(parseProxyConfig({ tls: files, shutdown: { gracePeriodMs: '2s' } }).shutdown).toEqual({ gracePeriodMs: 2000, minDrainMs: 2000 });
    expect(parseProxyConfig({ tls: files, shutdown: { gracePeriodMs: '20s', minDrainMs: '0s' } }).shutdown).toEqual({ gracePeriodMs: 20_000, minDrainMs: 0 });
    expect(parseProxyConfig({ tls: files, shutdown: { gracePeriodMs: '20s', minDrainMs: '20s' } }).shutdown.minDrainMs).toBe(20_000);
  });

  test('an explicit minDrainMs longer than the grace period is refused: the grace period bounds the whole drain', () => {
    expect(problem({ tls: files, shutdown: { gracePeriodMs: '10s', minDrainMs: '15s' } })).toBe(
      'cfg: shutdown.minDrainMs: 15000 ms is longer than shutdown.gracePeriodMs (10000 ms), which bounds the whole drain: lower it or raise the grace period',
    );
    expect(problem({ tls: files, shutdown: { minDrainMs: 'soon' } })).toMatch(/^cfg: shutdown\.minDrainMs: expected a duration/);
  });

  test('in-cluster: WREN_SHUTDOWN_GRACE_PERIOD and WREN_SHUTDOWN_MIN_DRAIN (the injector sets them from terminationGracePeriodSeconds and the sidecar mode)', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    expect(proxyConfigFromEnv(env).shutdown).toEqual({ gracePeriodMs: 30_000, minDrainMs: 5000 });
    expect(proxyConfigFromEnv({ ...env, WREN_SHUTDOWN_GRACE_PERIOD: '25s', WREN_SHUTDOWN_MIN_DRAIN: '0s' }).shutdown).toEqual({ gracePeriodMs: 25_000, minDrainMs: 0 });
    expect(() => proxyConfigFromEnv({ ...env, WREN_SHUTDOWN_GRACE_PERIOD: '3s', WREN_SHUTDOWN_MIN_DRAIN: '5s' })).toThrow(/^environment: WREN_SHUTDOWN_MIN_DRAIN: 5000 ms is longer than/);
    expect(() => proxyConfigFromEnv({ ...env, WREN_SHUTDOWN_GRACE_PERIOD: 'long' })).toThrow(/^environment: WREN_SHUTDOWN_GRACE_PERIOD: expected a duration/);
  });
});

describe('concurrency (worker threads, Envoy --concurrency)', () => {
  test('default 1 (the main thread serves); an integer 1..64 otherwise', () => {
    expect(parseProxyConfig({ tls: files }).concurrency).toBe(1);
    expect(parseProxyConfig({ tls: files, concurrency: 2 }).concurrency).toBe(2);
  });

  test('0, negative, non-integer and non-number values name the field path', () => {
    expect(problem({ tls: files, concurrency: 0 })).toBe('cfg: concurrency: expected a number in 1..64, got 0');
    expect(problem({ tls: files, concurrency: -2 })).toBe('cfg: concurrency: expected a number in 1..64, got -2');
    expect(problem({ tls: files, concurrency: 1.5 })).toBe('cfg: concurrency: expected an integer in 1..64, got 1.5');
    expect(problem({ tls: files, concurrency: 'two' })).toBe('cfg: concurrency: expected a number, got "two"');
    expect(problem({ tls: files, concurrency: 65 })).toBe('cfg: concurrency: expected a number in 1..64, got 65');
  });

  test('in-cluster: WREN_CONCURRENCY (the injector sets it from wren.io/proxy-concurrency)', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    expect(proxyConfigFromEnv(env).concurrency).toBe(1);
    expect(proxyConfigFromEnv({ ...env, WREN_CONCURRENCY: '2' }).concurrency).toBe(2);
    expect(() => proxyConfigFromEnv({ ...env, WREN_CONCURRENCY: '0' })).toThrow('environment: WREN_CONCURRENCY: expected a number in 1..64, got 0');
  });

  test('in-cluster: WREN_TRACING_SAMPLING, WREN_ACCESS_LOG, WREN_ACCESS_LOG_SAMPLING (the injector sets them from the telemetry annotations)', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    expect(proxyConfigFromEnv(env).telemetry).toEqual({ tracing: { samplingPercent: undefined }, accessLog: { enabled: undefined, samplingPercent: undefined } });
    expect(proxyConfigFromEnv({ ...env, WREN_TRACING_SAMPLING: '0.5', WREN_ACCESS_LOG: 'true', WREN_ACCESS_LOG_SAMPLING: '25' }).telemetry)
      .toEqual({ tracing: { samplingPercent: 0.5 }, accessLog: { enabled: true, samplingPercent: 25 } });
    expect(proxyConfigFromEnv({ ...env, WREN_ACCESS_LOG: 'false' }).telemetry.accessLog.enabled).toBe(false);
    expect(() => proxyConfigFromEnv({ ...env, WREN_TRACING_SAMPLING: '150' })).toThrow('environment: WREN_TRACING_SAMPLING: expected a number in 0..100, got 150');
    expect(() => proxyConfigFromEnv({ ...env, WREN_ACCESS_LOG: 'yes' })).toThrow(/^environment: WREN_ACCESS_LOG: /);
    expect(() => proxyConfigFromEnv({ ...env, WREN_ACCESS_LOG_SAMPLING: 'all' })).toThrow(/^environment: WREN_ACCESS_LOG_SAMPLING: /);
    // A decimal where an integer is required is still refused, naming the variable.
    expect(() => proxyConfigFromEnv({ ...env, WREN_CONCURRENCY: '1.5' })).toThrow(/^environment: WREN_CONCURRENCY: /);
  });

  test('in-cluster: WREN_MESH_HTTP1 (the injector sets it from wren.io/mesh-http1)', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    expect(proxyConfigFromEnv(env).protocol.meshHttp1).toBe('mux');
    expect(proxyConfigFromEnv({ ...env, WREN_MESH_HTTP1: 'h2' }).protocol.meshHttp1).toBe('h2');
    expect(proxyConfigFromEnv({ ...env, WREN_MESH_HTTP1: 'h1' }).protocol.meshHttp1).toBe('h1');
    expect(() => proxyConfigFromEnv({ ...env, WREN_MESH_HTTP1: 'http2' })).toThrow(/WREN_MESH_HTTP1/);
    expect(proxyConfigFromEnv(env).protocol.meshHttp2).toBe('mux');
    expect(proxyConfigFromEnv({ ...env, WREN_MESH_HTTP2: 'h2' }).protocol.meshHttp2).toBe('h2');
    expect(() => proxyConfigFromEnv({ ...env, WREN_MESH_HTTP2: 'h1' })).toThrow(/WREN_MESH_HTTP2/);
  });

  test('in-cluster: WREN_OPAQUE_PORTS (the injector sets it from wren.io/opaque-ports) is the inbound\'s list (protocol.inboundOpaquePorts), the outbound keeps protocol.opaquePorts; "" is none, not unset', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    const DEFAULTS = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];
    expect(proxyConfigFromEnv(env).protocol).toMatchObject({ opaquePorts: DEFAULTS, inboundOpaquePorts: undefined });
    // The pod's own list decides how it is reached; what it calls keeps the defaults (a call to MySQL on 3306 never waits).
    expect(proxyConfigFromEnv({ ...env, WREN_OPAQUE_PORTS: '3306, 8000' }).protocol).toMatchObject({ opaquePorts: DEFAULTS, inboundOpaquePorts: [3306, 8000] });
    expect(proxyConfigFromEnv({ ...env, WREN_OPAQUE_PORTS: '' }).protocol).toMatchObject({ opaquePorts: DEFAULTS, inboundOpaquePorts: [] });
    expect(() => proxyConfigFromEnv({ ...env, WREN_OPAQUE_PORTS: '3306,mysql' })).toThrow(/^environment: WREN_OPAQUE_PORTS: /);
    expect(() => proxyConfigFromEnv({ ...env, WREN_OPAQUE_PORTS: '70000' })).toThrow(/^environment: WREN_OPAQUE_PORTS: /);
  });

  test('in-cluster: WREN_TRACING_COLLECTOR and WREN_TRACING_COLLECTOR_PLAINTEXT (tracing.collector)', () => {
    const env = {
      POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp:15010', WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/t',
    };
    expect(proxyConfigFromEnv(env).tracing.collector).toBeUndefined();
    expect(proxyConfigFromEnv({ ...env, WREN_TRACING_COLLECTOR: 'otel.obs:4317', WREN_TRACING_COLLECTOR_PLAINTEXT: 'true' }).tracing.collector).toMatchObject({ address: 'otel.obs:4317', plaintext: true });
    expect(proxyConfigFromEnv({ ...env, WREN_TRACING_COLLECTOR: 'otel.obs:4317' }).tracing.collector?.plaintext).toBe(false);
    expect(() => proxyConfigFromEnv({ ...env, WREN_TRACING_COLLECTOR: 'otel' })).toThrow(/WREN_TRACING_COLLECTOR/);
  });
});

describe('egress (docs/traffic-management.md, Egress)', () => {
  test('defaults: no mode (the control plane\'s, else ALLOW_ANY), no ExternalServices, 10 s connect timeout', () => {
    expect(parseProxyConfig({ tls: files }).egress).toEqual({ mode: undefined, externalServices: [], connectTimeoutMs: 10_000 });
    const c = parseProxyConfig({ tls: files, egress: { mode: 'REGISTRY_ONLY', connectTimeoutMs: '2s', externalServices: [{ name: 'x', hosts: ['a.example.com'], ports: [{ number: 443, protocol: 'TLS' }] }] } });
    expect(c.egress).toMatchObject({ mode: 'REGISTRY_ONLY', connectTimeoutMs: 2000, externalServices: [{ name: 'x', hosts: ['a.example.com'] }] });
  });

  test('errors name the field path', () => {
    expect(problem({ tls: files, egress: { mode: 'OPEN' } })).toBe('cfg: egress.mode: expected one of ALLOW_ANY, REGISTRY_ONLY, got "OPEN"');
    expect(problem({ tls: files, egress: { connectTimeoutMs: 'soon' } })).toBe('cfg: egress.connectTimeoutMs: expected a duration like "250ms", "1s", "5m" or milliseconds, got "soon"');
    expect(problem({ tls: files, egress: { externalServices: [{ name: 'x', hosts: ['a.example.com'], ports: [{ number: 80, protocol: 'TLS', tls: { mode: 'SIMPLE' } }] }] } }))
      .toBe('cfg: egress.externalServices[0].ports[0].tls: TLS origination needs protocol HTTP (the app speaks plain HTTP), got TLS');
    expect(problem({ tls: files, egress: { externalServices: [{ hosts: ['a.example.com'], ports: [] }] } })).toBe('cfg: egress.externalServices[0].name: expected a string, got undefined');
  });
});

test('accessLogFlush: Envoy-like size-or-interval flush of the access log, 1 s and 64 KiB by default; bounds name the field', () => {
  expect(parseProxyConfig({ tls: files }).accessLogFlush).toEqual({ intervalMs: 1000, minBytes: 65536 });
  expect(parseProxyConfig({ tls: files, accessLogFlush: { intervalMs: '250ms', minBytes: 0 } }).accessLogFlush).toEqual({ intervalMs: 250, minBytes: 0 });
  expect(problem({ tls: files, accessLogFlush: { minBytes: 8 << 20 } })).toMatch(/accessLogFlush\.minBytes/);
  expect(problem({ tls: files, accessLogFlush: { intervalMs: 'soon' } })).toMatch(/accessLogFlush\.intervalMs/);
});
