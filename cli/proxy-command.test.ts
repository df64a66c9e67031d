import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { writeDevMesh } from '../certs/dev-mesh.js';
import { certificateIdentityProblem, proxyCommand } from './proxy-command.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const env = {
  POD_NAME: 'web-0', POD_NAMESPACE: 'shop', WREN_SERVICE_ACCOUNT: 'web', WREN_CONTROL_PLANE: 'cp.wren-system.svc:15010',
  WREN_TRUST_BUNDLE: PEM, WREN_TOKEN_FILE: '/var/run/secrets/wren.io/identity/token',
};

async function run(argv: string[], e: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await proxyCommand(argv, (s) => (out += s), (s) => (err += s), e);
  return { code, out, err };
}

test('--help names the config fields as they are spelt (shutdown.gracePeriodMs)', async () => {
  const r = await run(['--help']);
  expect(r.code).toBe(0);
  expect(r.out).toContain('within shutdown.gracePeriodMs,');
  expect(r.out).not.toMatch(/shutdown\.gracePeriod[^M]/);
});

describe('wren proxy in-cluster mode', () => {
  test('no --config: the injector environment is the config', async () => {
    expect(await run(['--check'], env)).toEqual({ code: 0, out: 'configuration ok: control plane cp.wren-system.svc:15010, certificates from cp.wren-system.svc:15010\n', err: '' });
    const bad = await run(['--check'], { ...env, WREN_OUTBOUND_PORT: 'x' });
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('wren proxy: invalid configuration: environment: WREN_OUTBOUND_PORT: expected a number, got "x"\n');
    const none = await run([], {});
    expect(none.code).toBe(2);
    expect(none.err).toContain('--config FILE is required');
  });

  test('--config beside the injector environment: the file is the config, and the variables it leaves unread are named (adv64: dropped silently)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wren-proxy-env-'));
    try {
      const f = join(dir, 'p.json');
      await writeFile(f, JSON.stringify({ identity: { namespace: 'shop', serviceAccount: 'web', certify: { tokenFile: '/t' } }, discovery: { controlPlane: 'other:15010', insecure: true } }));
      const both = await run(['--config', f, '--check'], { ...env, WREN_LOG_LEVEL: 'debug' });
      expect(both).toEqual({
        code: 0,
        out: 'configuration ok: control plane other:15010, certificates from other:15010 (plaintext to the control plane)\n',
        err: `wren proxy: --config ${f} is the configuration; the in-cluster environment beside it is not read (WREN_SERVICE_ACCOUNT, WREN_CONTROL_PLANE, WREN_TRUST_BUNDLE, WREN_TOKEN_FILE, WREN_LOG_LEVEL)\n`,
      });
      expect((await run(['--config', f, '--check'], {})).err).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('wren proxy --check reads what a start would refuse (exit 2), not only the YAML', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wren-proxy-check-'));
    await writeDevMesh(dir, { trustDomain: 'cluster.local', workloads: [{ namespace: 'default', serviceAccount: 'web' }] });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function check(name: string, cfg: Record<string, unknown>) {
    const f = join(dir, name);
    await writeFile(f, JSON.stringify(cfg));
    return run(['--config', f, '--check']);
  }
  const tls = (over: Record<string, string> = {}) => ({ certFile: join(dir, 'web.default.crt'), keyFile: join(dir, 'web.default.key'), trustBundleFile: join(dir, 'ca.crt'), ...over });

  test('tls: files that fit identity.* pass', async () => {
    expect(await check('ok.json', { identity: { namespace: 'default', serviceAccount: 'web' }, tls: tls() })).toEqual({ code: 0, out: 'configuration ok: 0 static service(s), certificates from files\n', err: '' });
  });

  test('a certificate issued to another workload than identity.* is refused, as at start', async () => {
    const r = await check('other.json', { identity: { namespace: 'default', serviceAccount: 'client' }, tls: tls() });
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toContain('identity.serviceAccount "client" does not match the certificate in tls.certFile');
  });

  test('missing certificate files and a key that does not fit are refused', async () => {
    const missing = await check('missing.json', { identity: { namespace: 'default', serviceAccount: 'web' }, tls: tls({ certFile: join(dir, 'nope.crt') }) });
    expect(missing).toMatchObject({ code: 2, out: '' });
    expect(missing.err).toMatch(/^wren proxy: cannot load TLS material: ENOENT/);
    const wrongKey = await check('key.json', { identity: { namespace: 'default', serviceAccount: 'web' }, tls: tls({ keyFile: join(dir, 'ca.key') }) });
    expect(wrongKey).toMatchObject({ code: 2, out: '' });
    expect(wrongKey.err).toMatch(/^wren proxy: cannot load TLS material: /);
  });

  test('an unreadable tracing.collector.tls file is refused naming its field, by --check and by a start (no stack trace)', async () => {
    const cfg = { identity: { namespace: 'default', serviceAccount: 'web' }, tls: tls(), tracing: { collector: { address: 'otel:4317', tls: { caFile: join(dir, 'otel-ca.pem') } } } };
    const r = await check('tracing.json', cfg);
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toMatch(/^wren proxy: cannot read tracing\.collector\.tls\.caFile: ENOENT[^\n]*otel-ca\.pem'\n$/);
    const start = await run(['--config', join(dir, 'tracing.json')]);
    expect(start).toMatchObject({ code: 2, out: '' });
    expect(start.err).toBe(r.err);
  });

  test('identity.certify: an unreadable trustBundleFile is refused', async () => {
    const r = await check('certify.json', { identity: { namespace: 'default', serviceAccount: 'web', certify: { controlPlane: '127.0.0.1:15010', tokenFile: join(dir, 'token'), trustBundleFile: join(dir, 'nope.pem') } } });
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toMatch(/^wren proxy: cannot read identity.certify.trustBundleFile: ENOENT/);
  });
});

describe('wren proxy: the first certificate', () => {
  let dir: string;
  let cp: ControlPlane;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wren-proxy-cmd-'));
    await writeFile(join(dir, 'tokens.yaml'), 'tokens:\n  - { token: token-for-cart-0123456789, namespace: shop, serviceAccount: cart }\n');
    const issuer = generateIssuer('cluster.local');
    await writeFile(join(dir, 'bundle.pem'), issuer.trustBundlePem);
    await writeFile(join(dir, 'token'), 'token-for-cart-0123456789');
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: silentLogger,
      source: (ctx) => new DirSource({ ...ctx, dir }), identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) }, transport: 'tls',
    });
  });
  afterAll(async () => {
    await cp.kill();
    await rm(dir, { recursive: true, force: true });
  });

  async function config(name: string, certify: Record<string, unknown>): Promise<string> {
    const f = join(dir, name);
    await writeFile(f, JSON.stringify({ identity: { namespace: 'shop', serviceAccount: 'web', certify: { tokenFile: join(dir, 'token'), trustBundleFile: join(dir, 'bundle.pem'), ...certify } } }));
    return f;
  }

  test('a token for another identity fails at once with the control plane\'s reason (exit 1)', async () => {
    const r = await run(['--config', await config('denied.json', { controlPlane: `127.0.0.1:${cp.grpcPort}` })]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('wren proxy: cannot obtain a certificate for spiffe://cluster.local/ns/shop/sa/web from the control plane (1 attempt(s)): gRPC 7: the token proves shop/cart');
  });

  test('an unreachable control plane is retried until startupTimeoutMs, then exit 1', async () => {
    const t0 = Date.now();
    const r = await run(['--config', await config('down.json', { controlPlane: '127.0.0.1:1', startupTimeoutMs: '2s' })]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot obtain a certificate .* \([2-9] attempt\(s\)\): gRPC 14/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('certificateIdentityProblem (tls: files against identity)', () => {
  const id = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'web' } as Parameters<typeof certificateIdentityProblem>[0];
  test('the same workload: none; a certificate for something else than a workload: named', () => {
    expect(certificateIdentityProblem(id, 'spiffe://cluster.local/ns/default/sa/web', 'c.pem')).toBeNull();
    expect(certificateIdentityProblem(id, 'spiffe://cluster.local/ns/default/sa/cart', 'c.pem')).toBe(
      'identity.serviceAccount "web" does not match the certificate in tls.certFile c.pem, issued to spiffe://cluster.local/ns/default/sa/cart: set identity.serviceAccount to the certificate\'s, or use a certificate issued to spiffe://cluster.local/ns/default/sa/web',
    );
    expect(certificateIdentityProblem(id, 'spiffe://cluster.local/gateway', 'c.pem')).toBe(
      'the certificate in tls.certFile c.pem is issued to spiffe://cluster.local/gateway, not a workload ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>',
    );
  });
});
