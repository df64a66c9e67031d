import { parseControlPlaneArgs } from './main.js';

describe('wren control-plane identity flags', () => {
  test('defaults: TLS, generated root, 24 h certificates, namespace from POD_NAMESPACE', () => {
    const a = parseControlPlaneArgs([], { POD_NAMESPACE: 'mesh-system' });
    expect(a.insecure).toBe(false);
    expect(a.identity).toEqual({
      caDir: null, trustBundle: null, bootstrapTokens: null, certTtlMs: 24 * 3_600_000, tokenReview: { timeoutMs: 5000, maxInFlight: 32, maxInFlightPerSource: 8 }, namespace: 'mesh-system', writeTrustBundle: null,
      certifyLimit: {},
    });
    expect(parseControlPlaneArgs([], {}).identity.namespace).toBe('wren-system');
  });

  test('every identity flag', () => {
    const a = parseControlPlaneArgs(
      [
        '--source', 'kubernetes', '--ca-dir', '/var/run/wren/issuer', '--trust-bundle=/var/run/wren/trust/ca.crt', '--bootstrap-tokens', 't.yaml', '--cert-ttl', '90m', '--namespace', 'wren',
        '--write-trust-bundle', 'b.pem', '--insecure', '--token-review-timeout', '1500ms', '--token-review-max-in-flight=8', '--token-review-max-in-flight-per-source', '3',
      ],
      {},
    );
    expect(a.insecure).toBe(true);
    expect(a.identity).toEqual({
      caDir: '/var/run/wren/issuer', trustBundle: '/var/run/wren/trust/ca.crt', bootstrapTokens: 't.yaml', certTtlMs: 90 * 60_000,
      tokenReview: { timeoutMs: 1500, maxInFlight: 8, maxInFlightPerSource: 3 }, namespace: 'wren', writeTrustBundle: 'b.pem', certifyLimit: {},
    });
    expect(parseControlPlaneArgs(['--source=kubernetes', '--token-review-timeout', '2m'], {}).identity.tokenReview).toEqual({ timeoutMs: 120_000, maxInFlight: 32, maxInFlightPerSource: 8 });
    expect(parseControlPlaneArgs(['--cert-ttl', '3s'], {}).identity.certTtlMs).toBe(3000);
    expect(parseControlPlaneArgs(['--cert-ttl', '2d'], {}).identity.certTtlMs).toBe(2 * 86_400_000);
    expect(parseControlPlaneArgs(['--cert-ttl', '90d'], {}).identity.certTtlMs).toBe(90 * 86_400_000);
  });

  test('the Certify limit from flags (adv29: it was only settable embedded): per workload and per fleet', () => {
    expect(parseControlPlaneArgs(['--certify-burst', '10', '--certify-refill=30s'], {}).identity.certifyLimit).toEqual({ burst: 10, refillMs: 30_000 });
    expect(parseControlPlaneArgs(['--certify-fleet-burst', '100', '--certify-fleet-refill', '200ms'], {}).identity.certifyLimit).toEqual({ bootstrapToken: { burst: 100, refillMs: 200 } });
  });

  test('--discovery-max-streams-per-fleet (adv59): absent by default (the server\'s 256), an integer from 1', () => {
    expect(parseControlPlaneArgs([], {}).maxDiscoveryStreamsPerFleet).toBeUndefined();
    expect(parseControlPlaneArgs(['--discovery-max-streams-per-fleet', '1000'], {}).maxDiscoveryStreamsPerFleet).toBe(1000);
    expect(() => parseControlPlaneArgs(['--discovery-max-streams-per-fleet', '0'], {})).toThrow(/--discovery-max-streams-per-fleet/);
  });

  test('tracing flags: off by default; a collector with TLS or plaintext; the dependent flags alone are refused', () => {
    expect(parseControlPlaneArgs([], {}).tracing).toBeNull();
    expect(parseControlPlaneArgs(['--trace-collector', 'otel:4317', '--trace-collector-ca', '/ca.pem'], {}).tracing).toEqual({ collector: 'otel:4317', plaintext: false, caFile: '/ca.pem' });
    expect(parseControlPlaneArgs(['--trace-collector=otel:4317', '--trace-collector-plaintext'], {}).tracing).toEqual({ collector: 'otel:4317', plaintext: true, caFile: null });
    expect(() => parseControlPlaneArgs(['--trace-collector-plaintext'], {})).toThrow(/need --trace-collector/);
    expect(() => parseControlPlaneArgs(['--trace-collector', 'otel'], {})).toThrow(/--trace-collector: expected host:port/);
    expect(() => parseControlPlaneArgs(['--trace-collector', 'otel:4317', '--trace-collector-plaintext', '--trace-collector-ca', '/ca.pem'], {})).toThrow(/exclusive/);
  });

  test('--sidecar-mode: auto (default: by the API server\'s version), native, or classic for API servers before 1.29; a webhook option', () => {
    const w = (args: string[]) => parseControlPlaneArgs(['--webhook-listen', '0.0.0.0:15017', ...args], {}).webhook;
    expect(w([])?.sidecarMode).toBe('auto');
    expect(w(['--sidecar-mode', 'classic'])?.sidecarMode).toBe('classic');
    expect(w(['--sidecar-mode=native'])?.sidecarMode).toBe('native');
    expect(w(['--sidecar-mode=auto'])?.sidecarMode).toBe('auto');
    expect(() => w(['--sidecar-mode', 'legacy'])).toThrow('--sidecar-mode: expected auto, native or classic, got "legacy"');
    expect(() => parseControlPlaneArgs(['--sidecar-mode', 'classic'], {})).toThrow(/--sidecar-mode configures injected sidecars: it needs --webhook-listen/);
    // Beside an explicit --webhook-listen off, as --webhook-cert-dir: the manifest's other flags stay.
    expect(parseControlPlaneArgs(['--webhook-listen', 'off', '--sidecar-mode', 'classic'], {}).webhook).toBeNull();
  });

  test('the injected sidecars\' trace collector: a webhook option, host:port, plaintext only with it', () => {
    const w = (args: string[]) => parseControlPlaneArgs(['--webhook-listen', '0.0.0.0:15017', ...args], {}).webhook;
    expect(w([])).toMatchObject({ proxyTraceCollector: '', proxyTraceCollectorPlaintext: false });
    expect(w(['--proxy-trace-collector', 'otel:4317', '--proxy-trace-collector-plaintext'])).toMatchObject({ proxyTraceCollector: 'otel:4317', proxyTraceCollectorPlaintext: true });
    expect(() => w(['--proxy-trace-collector', 'otel'])).toThrow(/--proxy-trace-collector: expected host:port/);
    expect(() => w(['--proxy-trace-collector-plaintext'])).toThrow(/needs --proxy-trace-collector/);
    expect(() => parseControlPlaneArgs(['--proxy-trace-collector', 'otel:4317'], {})).toThrow(/needs --webhook-listen/);
  });

  test('a flag that would change nothing is refused: --kubeconfig without --source kubernetes, --webhook-cert-dir without --webhook-listen', () => {
    expect(parseControlPlaneArgs(['--source', 'kubernetes', '--kubeconfig', '/k'], {}).source).toEqual({ kind: 'kubernetes', kubeconfig: '/k' });
    expect(() => parseControlPlaneArgs(['--source', 'dir:./mesh', '--kubeconfig', '/k'], {})).toThrow('--kubeconfig is for --source kubernetes; with --source dir:PATH nothing reads it');
    // The default source is dir:./mesh.
    expect(() => parseControlPlaneArgs(['--kubeconfig', '/k'], {})).toThrow(/--kubeconfig is for --source kubernetes/);
    expect(parseControlPlaneArgs(['--webhook-listen', '0.0.0.0:15017', '--webhook-cert-dir', '/certs'], {}).webhook).toMatchObject({ certDir: '/certs' });
    expect(() => parseControlPlaneArgs(['--webhook-cert-dir', '/certs'], {})).toThrow('--webhook-cert-dir configures the injector webhook: it needs --webhook-listen HOST:PORT');
    // The install manifest passes both; turning the webhook off is editing the first to `off`
    // (docs/kubernetes.md): that must not put the control plane in a crash loop (adv13 D3).
    expect(parseControlPlaneArgs(['--webhook-listen=0.0.0.0:15017', '--webhook-listen', 'off', '--webhook-cert-dir', '/var/run/wren/webhook'], {}).webhook).toBeNull();
    expect(parseControlPlaneArgs(['--webhook-listen', 'off', '--webhook-cert-dir', '/certs'], {}).webhook).toBeNull();
  });

  test('--token-review-* without --source kubernetes is refused: a directory source makes no TokenReview, so the flags bounded nothing', () => {
    expect(() => parseControlPlaneArgs(['--token-review-timeout', '2s'], {})).toThrow(
      '--token-review-timeout: TokenReviews are made with --source kubernetes only; with --source dir:PATH nothing reads it',
    );
    expect(() => parseControlPlaneArgs(['--source', 'dir:./mesh', '--bootstrap-tokens', 't.yaml', '--token-review-max-in-flight', '4', '--token-review-max-in-flight-per-source=2'], {})).toThrow(
      '--token-review-max-in-flight, --token-review-max-in-flight-per-source: TokenReviews are made with --source kubernetes only; with --source dir:PATH nothing reads them',
    );
    // With the API server, the admin port's TokenReviews take them even beside --bootstrap-tokens.
    expect(parseControlPlaneArgs(['--source', 'kubernetes', '--bootstrap-tokens', 't.yaml', '--token-review-max-in-flight', '4'], {}).identity.tokenReview.maxInFlight).toBe(4);
  });

  test('health-based withdrawal flags: defaults and every flag', () => {
    expect(parseControlPlaneArgs([], {}).healthWithdrawal).toEqual({ enabled: true, minReporters: 2, windowMs: 10_000, ttlMs: 30_000, maxWithdrawnPercent: 50 });
    const a = parseControlPlaneArgs(
      ['--health-withdrawal', 'off', '--health-min-reporters', '3', '--health-window=5s', '--health-ttl', '2m', '--health-max-withdrawn-percent', '34'],
      {},
    );
    expect(a.healthWithdrawal).toEqual({ enabled: false, minReporters: 3, windowMs: 5_000, ttlMs: 120_000, maxWithdrawnPercent: 34 });
  });

  test.each([
    [['--health-min-reporters', '0'], /--health-min-reporters: expected a number in 1\.\.1000, got 0/],
    [['--health-min-reporters', 'two'], /--health-min-reporters: expected a number, got NaN|--health-min-reporters: expected a number/],
    [['--health-window', 'soon'], /--health-window: expected a duration/],
    [['--health-ttl', '0ms'], /--health-ttl: expected a duration of at least 1ms/],
    [['--health-max-withdrawn-percent', '150'], /--health-max-withdrawn-percent: expected a number in 0\.\.100/],
    [['--health-withdrawal', 'maybe'], /--health-withdrawal: expected on or off/],
    [['--cert-ttl', 'forever'], /--cert-ttl: expected a duration/],
    [['--token-review-timeout', '50ms'], /--token-review-timeout: expected a duration from 100ms to 5m/],
    [['--token-review-timeout', '1h'], /--token-review-timeout: expected a duration/],
    [['--token-review-max-in-flight', '0'], /--token-review-max-in-flight: expected a whole number in 1\.\.10000, got "0"/],
    [['--token-review-max-in-flight', '2.5'], /--token-review-max-in-flight: expected a whole number/],
    [['--token-review-max-in-flight-per-source', '0'], /--token-review-max-in-flight-per-source: expected a whole number in 1\.\.10000, got "0"/],
    [['--cert-ttl', '500ms'], /at least 1s/],
    // Past the CA's 90 days the flag was taken and the start failed later (exit 1, no flag named).
    [['--cert-ttl', '91d'], /^--cert-ttl: expected a duration of at least 1s and at most 90d/],
    [['--cert-ttl', '2200h'], /^--cert-ttl: expected a duration of at least 1s and at most 90d/],
    [['--certify-burst', '0'], /^--certify-burst: expected a number in 1\.\.100000, got 0$/],
    [['--certify-burst', 'lots'], /^--certify-burst: expected a number, got "lots"$/],
    [['--certify-refill', '0s'], /^--certify-refill: expected a duration from 1ms to 24h, got 0 ms$/],
    [['--certify-fleet-burst', '2.5'], /^--certify-fleet-burst: expected a number, got "2.5"$|^--certify-fleet-burst: expected an integer/],
    [['--certify-fleet-refill', 'soon'], /^--certify-fleet-refill: expected a duration/],
    [['--report-burst', '0'], /^--report-burst: expected a number in 1\.\.10000, got 0$/],
    [['--report-burst', '1.5'], /^--report-burst: expected an integer in 1\.\.10000, got 1\.5$/],
    [['--report-rate', 'fast'], /^--report-rate: expected a number, got "fast"$/],
    [['--report-rate', '0'], /^--report-rate: expected a number in 0\.001\.\.1000, got 0$/],
    [['--stats-max-series', '-3'], /^--stats-max-series: expected a number, got "-3"$/],
    [['--stats-max-series-per-proxy', '0'], /^--stats-max-series-per-proxy: expected a number in 1\.\.10000000, got 0$/],
    [['--stats-max-reporters', '2000000'], /^--stats-max-reporters: expected a number in 1\.\.1000000, got 2000000$/],
    [['--stats-max-reporters'], /^--stats-max-reporters needs a value$/],
    [['--namespace', 'Wren'], /--namespace: expected a Kubernetes namespace name/],
    [['--trust-bundle', 'b.pem'], /--trust-bundle needs --ca-dir/],
    [['--ca-dir'], /--ca-dir needs a value/],
  ])('usage error %j', (argv, msg) => {
    expect(() => parseControlPlaneArgs(argv, {})).toThrow(msg);
  });
});

describe('wren control-plane report flags (adv41: settable only embedded)', () => {
  test('unset: the defaults; each flag its field', () => {
    expect(parseControlPlaneArgs([], {}).reports).toEqual({ budget: {}, stats: {} });
    expect(parseControlPlaneArgs([
      '--report-burst', '20', '--report-rate=0.5', '--stats-max-series', '50000', '--stats-max-series-per-proxy=500', '--stats-max-reporters', '20000',
    ], {}).reports).toEqual({ budget: { burst: 20, perSecond: 0.5 }, stats: { maxSeries: 50_000, maxSeriesPerReporter: 500, maxReporters: 20_000 } });
  });
});

describe('wren control-plane --egress-mode', () => {
  test('unset by default (proxies fall back to ALLOW_ANY); ALLOW_ANY or REGISTRY_ONLY; anything else is a usage error', () => {
    expect(parseControlPlaneArgs([], {}).egressMode).toBeNull();
    expect(parseControlPlaneArgs(['--egress-mode', 'REGISTRY_ONLY'], {}).egressMode).toBe('REGISTRY_ONLY');
    expect(parseControlPlaneArgs(['--egress-mode=ALLOW_ANY'], {}).egressMode).toBe('ALLOW_ANY');
    expect(() => parseControlPlaneArgs(['--egress-mode', 'registry_only'], {})).toThrow('--egress-mode: expected ALLOW_ANY or REGISTRY_ONLY, got "registry_only"');
  });
});

describe('wren control-plane --admin-render-budget / --admin-render-threshold (the /api/ pages\' render budget)', () => {
  test('default 4 × a render of 100 ms or more; off; a factor and a threshold', () => {
    expect(parseControlPlaneArgs([], {}).adminRenderBudget).toEqual({ factor: 4, thresholdMs: 100 });
    expect(parseControlPlaneArgs(['--admin-render-budget', 'off'], {}).adminRenderBudget).toEqual({ factor: 0, thresholdMs: 100 });
    expect(parseControlPlaneArgs(['--admin-render-budget=10', '--admin-render-threshold', '1s'], {}).adminRenderBudget).toEqual({ factor: 10, thresholdMs: 1000 });
  });
  test('bad values and a budget without an admin port are usage errors', () => {
    expect(() => parseControlPlaneArgs(['--admin-render-budget', '0'], {})).toThrow('--admin-render-budget: expected a factor in 1..100 or off, got "0"');
    expect(() => parseControlPlaneArgs(['--admin-render-budget', '101'], {})).toThrow(/expected a factor in 1\.\.100/);
    expect(() => parseControlPlaneArgs(['--admin-render-threshold', '0ms'], {})).toThrow('--admin-render-threshold: expected a duration from 1ms to 10s like 100ms, got "0ms"');
    expect(() => parseControlPlaneArgs(['--admin-render-threshold', '100'], {})).toThrow(/--admin-render-threshold/);
    expect(() => parseControlPlaneArgs(['--admin', 'off', '--admin-render-budget', '4'], {})).toThrow(/need it \(not --admin off\)/);
  });
});
