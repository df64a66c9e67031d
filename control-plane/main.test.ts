import { parseControlPlaneArgs } from './main.js';

describe('wren control-plane identity flags', () => {
  test('defaults: TLS, generated root, 24 h certificates, namespace from POD_NAMESPACE', () => {
    const a = parseControlPlaneArgs([], { POD_NAMESPACE: 'mesh-system' });
    expect(a.insecure).toBe(false);
    expect(a.identity).toEqual({ caDir: null, trustBundle: null, bootstrapTokens: null, certTtlMs: 24 * 3_600_000, namespace: 'mesh-system', writeTrustBundle: null });
    expect(parseControlPlaneArgs([], {}).identity.namespace).toBe('wren-system');
  });

  test('every identity flag', () => {
    const a = parseControlPlaneArgs(
      ['--ca-dir', '/var/run/wren/issuer', '--trust-bundle=/var/run/wren/trust/ca.crt', '--bootstrap-tokens', 't.yaml', '--cert-ttl', '90m', '--namespace', 'wren', '--write-trust-bundle', 'b.pem', '--insecure'],
      {},
    );
    expect(a.insecure).toBe(true);
    expect(a.identity).toEqual({
      caDir: '/var/run/wren/issuer', trustBundle: '/var/run/wren/trust/ca.crt', bootstrapTokens: 't.yaml', certTtlMs: 90 * 60_000, namespace: 'wren', writeTrustBundle: 'b.pem',
    });
    expect(parseControlPlaneArgs(['--cert-ttl', '3s'], {}).identity.certTtlMs).toBe(3000);
    expect(parseControlPlaneArgs(['--cert-ttl', '2d'], {}).identity.certTtlMs).toBe(2 * 86_400_000);
  });

  test.each([
    [['--cert-ttl', 'forever'], /--cert-ttl: expected a duration/],
    [['--cert-ttl', '500ms'], /at least 1s/],
    [['--namespace', 'Wren'], /--namespace: expected a Kubernetes namespace name/],
    [['--trust-bundle', 'b.pem'], /--trust-bundle needs --ca-dir/],
    [['--ca-dir'], /--ca-dir needs a value/],
  ])('usage error %j', (argv, msg) => {
    expect(() => parseControlPlaneArgs(argv, {})).toThrow(msg);
  });
});
