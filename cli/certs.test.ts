import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOCK_SKEW_MS } from '../certs/ca.js';
import { certInfo, verifyChain } from '../certs/verify.js';
import { certsCommand } from './certs.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await certsCommand(
    argv,
    (s) => (out += s),
    (s) => (err += s),
  );
  return { code, out, err };
}

describe('wren certs', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wren-cli-certs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('ca, then issue from it: files, modes, openssl, chain', async () => {
    const caDir = join(dir, 'ca');
    const r = await run('ca', '--out', caDir, '--trust-domain', 'prod.example', '--validity', '30d');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toContain('trust domain prod.example');
    expect(statSync(join(caDir, 'ca.key')).mode & 0o777).toBe(0o600);
    const caPem = readFileSync(join(caDir, 'ca.crt'), 'utf8');
    const caInfo = certInfo(caPem);
    expect(caInfo.spiffeId).toBe('spiffe://prod.example');
    expect(Math.round((caInfo.notAfter.getTime() - caInfo.notBefore.getTime()) / 60_000)).toBe(30 * 24 * 60 + CLOCK_SKEW_MS / 60_000);

    // refusing to clobber the CA key
    const again = await run('ca', '--out', caDir);
    expect(again.code).toBe(1);
    expect(again.err).toContain('--force');
    expect(readFileSync(join(caDir, 'ca.crt'), 'utf8')).toBe(caPem);

    const outDir = join(dir, 'issued');
    const i = await run('issue', '--ca-dir', caDir, '--namespace', 'shop', '--service-account', 'cart', '--ttl', '2h', '--out', outDir);
    expect(i).toMatchObject({ code: 0, err: '' });
    expect(i.out).toContain('issued spiffe://prod.example/ns/shop/sa/cart');
    const certFile = join(outDir, 'cart.shop.crt');
    expect(statSync(join(outDir, 'cart.shop.key')).mode & 0o777).toBe(0o600);
    expect(execFileSync('openssl', ['verify', '-CAfile', join(caDir, 'ca.crt'), certFile], { encoding: 'utf8' })).toContain(': OK');
    const leaf = readFileSync(certFile, 'utf8');
    expect(verifyChain(leaf, [], [caPem])).toEqual({ ok: true, spiffeId: 'spiffe://prod.example/ns/shop/sa/cart' });
    const info = certInfo(leaf);
    expect(info.notAfter.getTime() - info.notBefore.getTime()).toBe(2 * 3_600_000 + CLOCK_SKEW_MS);

    const named = await run('issue', '--ca-dir', caDir, '--namespace', 'shop', '--service-account', 'cart', '--out', outDir, '--name', 'proxy');
    expect(named.code).toBe(0);
    expect(existsSync(join(outDir, 'proxy.crt'))).toBe(true);

    // a trust domain that contradicts the CA
    const td = await run('issue', '--ca-dir', caDir, '--namespace', 'a', '--service-account', 'b', '--out', outDir, '--trust-domain', 'other.example');
    expect(td.code).toBe(1);
    expect(td.err).toContain('TRUST_DOMAIN_MISMATCH');
  });

  test('dev-mesh writes a CA and one cert per workload', async () => {
    const meshDir = join(dir, 'mesh');
    const r = await run('dev-mesh', '--out', meshDir, '--trust-domain', 'dev.local', '--workload', 'default/web', '--workload', 'shop/cart');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toContain('spiffe://dev.local/ns/default/sa/web');
    expect(statSync(join(meshDir, 'ca.key')).mode & 0o777).toBe(0o600);
    for (const stem of ['web.default', 'cart.shop']) {
      expect(statSync(join(meshDir, `${stem}.key`)).mode & 0o777).toBe(0o600);
      expect(execFileSync('openssl', ['verify', '-CAfile', join(meshDir, 'ca.crt'), join(meshDir, `${stem}.crt`)], { encoding: 'utf8' })).toContain(': OK');
    }
  });

  test('dev-mesh refuses to replace a CA already in the directory without --force, as ca does', async () => {
    const meshDir = join(dir, 'mesh-again');
    expect((await run('dev-mesh', '--out', meshDir, '--workload', 'default/web')).code).toBe(0);
    const caKey = readFileSync(join(meshDir, 'ca.key'), 'utf8');
    const webCrt = readFileSync(join(meshDir, 'web.default.crt'), 'utf8');
    const again = await run('dev-mesh', '--out', meshDir, '--workload', 'default/client');
    expect(again.code).toBe(1);
    expect(again.err).toContain('ca.key already exists; pass --force');
    expect(readFileSync(join(meshDir, 'ca.key'), 'utf8')).toBe(caKey);
    expect(existsSync(join(meshDir, 'client.default.crt'))).toBe(false);
    const forced = await run('dev-mesh', '--out', meshDir, '--workload', 'default/web', '--force');
    expect(forced).toMatchObject({ code: 0, err: '' });
    expect(readFileSync(join(meshDir, 'ca.key'), 'utf8')).not.toBe(caKey);
    expect(readFileSync(join(meshDir, 'web.default.crt'), 'utf8')).not.toBe(webCrt);
    expect((await run('dev-mesh', '--help')).out).toContain('--force');
  });

  test('ca into a directory no one can make (under /proc) fails with the error that says why, instead of spinning forever', async () => {
    // node's mkdir({ recursive: true }) never returns there (it retries the ENOENT at 100 % CPU).
    const r = await Promise.race([
      run('ca', '--out', '/proc/wren-no-such/dir'),
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000).unref()),
    ]);
    expect(r).not.toBe('hung');
    expect(r).toMatchObject({ code: 1 });
    expect((r as { err: string }).err).toMatch(/ENOENT.*\/proc\/wren-no-such/);
    expect(existsSync('/proc/wren-no-such')).toBe(false);
  });

  test('inspect prints certInfo as JSON', async () => {
    const meshDir = join(dir, 'mesh');
    const r = await run('inspect', join(meshDir, 'web.default.crt'));
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ spiffeId: 'spiffe://dev.local/ns/default/sa/web', isCa: false, extKeyUsage: ['serverAuth', 'clientAuth'], subject: '' });
    expect(j.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(new Date(j.notAfter).getTime()).toBeGreaterThan(Date.now());
    const missing = await run('inspect', join(meshDir, 'nope.crt'));
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('nope.crt');
  });

  test.each(['ca', 'issue', 'dev-mesh', 'inspect'])('%s --help and -h list the flags', async (sub) => {
    for (const flag of ['--help', '-h']) {
      const r = await run(sub, flag);
      expect(r.code).toBe(0);
      expect(r.out).toContain(`Usage: wren certs ${sub}`);
      expect(r.out).toContain('--help');
      expect(r.err).toBe('');
    }
    expect((await run(sub, '--help')).out).toMatch(sub === 'inspect' ? /FILE/ : /--out DIR/);
  });

  test('group help and errors', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run(flag);
      expect(r.code).toBe(0);
      for (const c of ['ca', 'issue', 'dev-mesh', 'inspect']) expect(r.out).toContain(`  ${c} `);
    }
    expect((await run()).code).toBe(2);
    const unknown = await run('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "frobnicate"');
    // A name of Object.prototype is no command either (it was looked up through the prototype).
    for (const name of ['constructor', 'toString', '__proto__']) {
      const r = await run(name);
      expect([name, r.code, r.err.includes(`unknown command ${JSON.stringify(name)}`)]).toEqual([name, 2, true]);
    }
  });

  test.each([
    [['ca', '--out', '/tmp/x', '--bogus'], "Unknown option '--bogus'"],
    [['ca'], 'missing required flag: --out'],
    [['issue', '--out', '/tmp/x'], 'missing required flags: --ca-dir, --namespace, --service-account'],
    [['issue', '--ca-dir', '/tmp/x', '--namespace', 'a', '--service-account', 'b', '--out', '/tmp/y', '--ttl', 'forever'], '--ttl: expected a duration'],
    [['dev-mesh', '--out', '/tmp/x'], 'missing required flag: --workload'],
    [['dev-mesh', '--out', '/tmp/x', '--workload', 'just-a-name'], 'expected NAMESPACE/SERVICE-ACCOUNT'],
    [['dev-mesh', '--out', '/tmp/x', '--workload', 'BAD NS/sa'], '--workload: "BAD NS" is not a namespace name'],
    // What SPIFFE allows but no Wren sidecar or control plane takes (contract/identity.ts): refused, nothing written
    // (under /dev/null, so that even a CLI that accepted them could write nothing).
    [['dev-mesh', '--out', '/dev/null/x', '--workload', 'default/web', '--trust-domain', 'my_td'], '--trust-domain: "my_td" is not a trust domain (lowercase letters, digits, "." and "-"), as wren proxy and wren control-plane take it'],
    [['ca', '--out', '/dev/null/x', '--trust-domain', 'Prod.Example'], '--trust-domain: "Prod.Example" is not a trust domain'],
    [['dev-mesh', '--out', '/dev/null/x', '--workload', 'shop_1/web'], '--workload: "shop_1" is not a namespace name'],
    [['dev-mesh', '--out', '/dev/null/x', '--workload', 'default/Web'], '--workload: "Web" is not a service account name'],
    [['issue', '--ca-dir', '/dev/null/x', '--namespace', 'A_B', '--service-account', 'b', '--out', '/dev/null/y'], '--namespace: "A_B" is not a namespace name'],
    [['issue', '--ca-dir', '/dev/null/x', '--namespace', 'a', '--service-account', 'b_c', '--out', '/dev/null/y'], '--service-account: "b_c" is not a service account name'],
    [['inspect'], 'missing FILE'],
    [['inspect', 'a', 'b'], 'unexpected argument "b"'],
  ])('%j exits 2 with a clear message', async (argv, msg) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toContain(msg);
    expect(r.out).toBe('');
  });
});
