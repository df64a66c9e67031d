import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, splitPemCerts, verifyChain, type CaMaterial } from '../../certs/index.js';
import { generateIssuer, loadIssuerDir, type Issuer } from './issuer.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const fp = (pems: readonly string[]) => pems.map((p) => new X509Certificate(p).fingerprint256);
let dir: string;
let rootA: CaMaterial;
let rootB: CaMaterial;
let inter: CaMaterial;
let key: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-issuer-'));
  rootA = createRootCa({ trustDomain: TD, commonName: 'A' });
  rootB = createRootCa({ trustDomain: TD, commonName: 'B' });
  inter = createIntermediateCa(rootB, { trustDomain: TD });
  key = generateKeyPair().privateKeyPem;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function caDir(name: string, files: Record<string, string>): Promise<string> {
  const d = join(dir, name);
  await mkdir(d);
  for (const [f, text] of Object.entries(files)) await writeFile(join(d, f), text);
  return d;
}

/** Issues a leaf and checks it against the issuer's own bundle. */
function issuesVerifiable(issuer: Issuer): void {
  const w = issuer.ca.issue(createCsr(key, ID), { identity: ID });
  expect(verifyChain(w.certPem, w.chainPems, splitPemCerts(issuer.trustBundlePem))).toEqual({ ok: true, spiffeId: ID });
}

describe('loadIssuerDir', () => {
  test('kubernetes.io/tls layout: intermediate in tls.crt, two roots in ca.crt (rotation)', async () => {
    const d = await caDir('secret', { 'tls.crt': inter.certPem, 'tls.key': inter.keyPem, 'ca.crt': rootA.certPem + rootB.certPem });
    const issuer = await loadIssuerDir(d, { trustDomain: TD });
    expect(issuer.source).toBe(`dir:${d}`);
    expect(splitPemCerts(issuer.trustBundlePem)).toHaveLength(2);
    expect(issuer.ca.issuedChainPems).toHaveLength(1);
    issuesVerifiable(issuer);
  });

  test('a root in tls.crt after the issuer (cert-manager style) is kept out of the chain', async () => {
    const d = await caDir('with-root', { 'tls.crt': inter.certPem + rootB.certPem, 'tls.key': inter.keyPem, 'ca.crt': rootB.certPem });
    const issuer = await loadIssuerDir(d, { trustDomain: TD });
    expect(fp(issuer.ca.issuedChainPems)).toEqual(fp([inter.certPem]));
    issuesVerifiable(issuer);
  });

  test('wren certs layout (ca.crt + ca.key), with --trust-bundle adding a second root', async () => {
    const d = await caDir('wren', { 'ca.crt': rootA.certPem, 'ca.key': rootA.keyPem });
    issuesVerifiable(await loadIssuerDir(d, { trustDomain: TD }));
    const bundle = join(dir, 'bundle.pem');
    await writeFile(bundle, rootB.certPem + rootA.certPem);
    const issuer = await loadIssuerDir(d, { trustDomain: TD, trustBundleFile: bundle });
    expect(splitPemCerts(issuer.trustBundlePem)).toHaveLength(2);
    issuesVerifiable(issuer);
  });

  test('refuses an issuer that does not chain to the bundle, an intermediate without anchors, and empty dirs', async () => {
    const foreign = await caDir('foreign', { 'tls.crt': inter.certPem, 'tls.key': inter.keyPem, 'ca.crt': rootA.certPem });
    await expect(loadIssuerDir(foreign, { trustDomain: TD })).rejects.toThrow(/does not chain to any trust anchor/);
    const noAnchors = await caDir('no-anchors', { 'tls.crt': inter.certPem, 'tls.key': inter.keyPem });
    await expect(loadIssuerDir(noAnchors, { trustDomain: TD })).rejects.toThrow(/not a root and no trust anchors were given/);
    const empty = await caDir('empty', {});
    await expect(loadIssuerDir(empty, { trustDomain: TD })).rejects.toThrow(/holds neither tls\.crt\/tls\.key/);
    const wrongKey = await caDir('wrong-key', { 'tls.crt': inter.certPem, 'tls.key': rootA.keyPem, 'ca.crt': rootB.certPem });
    await expect(loadIssuerDir(wrongKey, { trustDomain: TD })).rejects.toThrow(/does not match/);
    await expect(loadIssuerDir(foreign, { trustDomain: 'other.td' })).rejects.toThrow(/trust domain/);
  });
});

test('generateIssuer makes a root that is its own bundle', () => {
  const issuer = generateIssuer(TD);
  expect(issuer.source).toBe('generated');
  expect(fp(splitPemCerts(issuer.trustBundlePem))).toEqual(fp([issuer.ca.certPem]));
  issuesVerifiable(issuer);
});
