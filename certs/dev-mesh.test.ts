import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOCK_SKEW_MS } from './ca.js';
import { createCsr } from './csr.js';
import { writeDevMesh } from './dev-mesh.js';
import { loadCaDir, writeSecretFile } from './files.js';
import { generateKeyPair } from './keys.js';
import { certInfo, verifyChain } from './verify.js';
import { splitPemCerts } from './x509.js';

describe('writeDevMesh', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wren-devmesh-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('writes a CA and per-workload cert/key files that openssl and verifyChain accept', async () => {
    const out = await writeDevMesh(dir, {
      trustDomain: 'dev.local',
      workloads: [
        { namespace: 'default', serviceAccount: 'web' },
        { namespace: 'shop', serviceAccount: 'cart', name: 'cart' },
      ],
      ttlMs: 3_600_000,
    });
    expect(out.caCertFile).toBe(join(dir, 'ca.crt'));
    expect(out.caKeyFile).toBe(join(dir, 'ca.key'));
    expect(out.workloads).toEqual([
      { name: 'web.default', certFile: join(dir, 'web.default.crt'), keyFile: join(dir, 'web.default.key'), spiffeId: 'spiffe://dev.local/ns/default/sa/web' },
      { name: 'cart', certFile: join(dir, 'cart.crt'), keyFile: join(dir, 'cart.key'), spiffeId: 'spiffe://dev.local/ns/shop/sa/cart' },
    ]);
    expect(statSync(out.caKeyFile).mode & 0o777).toBe(0o600);
    expect(statSync(out.caCertFile).mode & 0o777).toBe(0o644);
    const ca = readFileSync(out.caCertFile, 'utf8');
    for (const w of out.workloads) {
      expect(statSync(w.keyFile).mode & 0o777).toBe(0o600);
      expect(execFileSync('openssl', ['verify', '-CAfile', out.caCertFile, w.certFile], { encoding: 'utf8' })).toContain(': OK');
      const pem = readFileSync(w.certFile, 'utf8');
      expect(verifyChain(pem, [], [ca])).toEqual({ ok: true, spiffeId: w.spiffeId });
      // the key file matches the certificate
      const keyMod = execFileSync('openssl', ['rsa', '-in', w.keyFile, '-noout', '-modulus'], { encoding: 'utf8' });
      const certMod = execFileSync('openssl', ['x509', '-in', w.certFile, '-noout', '-modulus'], { encoding: 'utf8' });
      expect(keyMod).toBe(certMod);
      const info = certInfo(pem);
      expect(info.notAfter.getTime() - info.notBefore.getTime()).toBe(3_600_000 + CLOCK_SKEW_MS);
    }
  });

  test('loadCaDir recovers the trust domain and issues more certificates', async () => {
    const ca = await loadCaDir(dir);
    expect(ca.trustDomain).toBe('dev.local');
    const k = generateKeyPair();
    const leaf = ca.issue(createCsr(k.privateKeyPem, 'spiffe://dev.local/ns/x/sa/y'), { identity: 'spiffe://dev.local/ns/x/sa/y' });
    expect(verifyChain(leaf.certPem, leaf.chainPems, [readFileSync(join(dir, 'ca.crt'), 'utf8')]).ok).toBe(true);
    await expect(loadCaDir(dir, 'other.local')).rejects.toMatchObject({ code: 'TRUST_DOMAIN_MISMATCH' });
  });

  test('refuses clashing or unsafe file names', async () => {
    const sub = join(dir, 'clash');
    await expect(
      writeDevMesh(sub, { trustDomain: 'dev.local', workloads: [{ namespace: 'a', serviceAccount: 'b', name: 'x' }, { namespace: 'c', serviceAccount: 'd', name: 'x' }] }),
    ).rejects.toThrow('two workloads');
    await expect(writeDevMesh(sub, { trustDomain: 'dev.local', workloads: [{ namespace: 'a', serviceAccount: 'b', name: '../evil' }] })).rejects.toThrow('file name');
    await expect(writeDevMesh(sub, { trustDomain: 'dev.local', workloads: [{ namespace: 'a', serviceAccount: 'b', name: 'ca' }] })).rejects.toThrow('file name');
  });

  test('writeSecretFile replaces an existing world-readable file with a 0600 one', async () => {
    const p = join(dir, 'old.key');
    writeFileSync(p, 'old', { mode: 0o644 });
    await writeSecretFile(p, 'new');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readFileSync(p, 'utf8')).toBe('new');
    expect(splitPemCerts(readFileSync(join(dir, 'ca.crt'), 'utf8'))).toHaveLength(1);
  });
});
