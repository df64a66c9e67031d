import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, splitPemCerts, type CaMaterial } from '../../certs/index.js';
import { FakeClock, seededRandom, systemClock } from '../../common/clock.js';
import { createLogger, silentLogger } from '../../common/logger.js';
import { certFingerprint, chainRootFingerprint } from '../../contract/trust-anchors.js';
import { IdentityMetrics } from './identity-metrics.js';
import { ReloadingIssuer } from './issuer-reloader.js';
import { ServingIdentity } from './serving-identity.js';
import { issuerTrust } from './trust-state.js';

const TD = 'cluster.local';
const hourAgo = new Date(Date.now() - 3_600_000);
const rootA = createRootCa({ trustDomain: TD, commonName: 'A', now: hourAgo });
const rootB = createRootCa({ trustDomain: TD, commonName: 'B', now: hourAgo });
const interA = createIntermediateCa(rootA, { trustDomain: TD, now: hourAgo });
const interB = createIntermediateCa(rootB, { trustDomain: TD, now: hourAgo });
const A = certFingerprint(rootA.certPem);
const B = certFingerprint(rootB.certPem);

let dir: string;
const logs: string[] = [];
const logger = createLogger({ level: 'info', sink: (l) => void logs.push(l) });
const put = async (name: string, text: string) => {
  await writeFile(join(dir, `.${name}.tmp`), text);
  await rename(join(dir, `.${name}.tmp`), join(dir, name));
};
const setIssuer = async (ca: CaMaterial) => {
  await put('tls.crt', ca.certPem);
  await put('tls.key', ca.keyPem);
};
const load = (intervalMs = 50, clock = systemClock) => ReloadingIssuer.load({ dir, trustDomain: TD, trustBundleFile: join(dir, 'bundle.crt'), clock, logger, intervalMs });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-reload-'));
  logs.length = 0;
  await setIssuer(interA);
  await put('bundle.crt', rootA.certPem);
});
afterEach(() => rm(dir, { recursive: true, force: true }));

test('a changed bundle, then a new issuer chaining to it, are swapped in; listeners run once per swap', async () => {
  const issuer = await load();
  let changes = 0;
  issuer.onChange(() => changes++);
  expect(await issuer.reload()).toBe(false); // nothing changed
  expect(issuerTrust(issuer)).toMatchObject({ trustAnchorFingerprints: [A], signingRootFingerprint: A });

  await put('bundle.crt', rootA.certPem + rootB.certPem);
  expect(await issuer.reload()).toBe(true);
  expect(issuerTrust(issuer)).toMatchObject({ trustAnchorFingerprints: [A, B], signingRootFingerprint: A });

  await setIssuer(interB);
  expect(await issuer.reload()).toBe(true);
  expect(issuerTrust(issuer)).toMatchObject({ trustAnchorFingerprints: [A, B], signingRootFingerprint: B });
  expect(changes).toBe(2);
  expect(issuer.generation).toBe(3);
  // Rewriting the same content is no change.
  await put('bundle.crt', rootA.certPem + rootB.certPem);
  expect(await issuer.reload()).toBe(false);
  expect(changes).toBe(2);
  // What Certify hands out now chains to B.
  const snap = issuer.snapshot();
  const id = `spiffe://${TD}/ns/a/sa/b`;
  const leaf = snap.ca.issue(createCsr(generateKeyPair().privateKeyPem, id), { identity: id });
  expect(chainRootFingerprint([leaf.certPem, ...leaf.chainPems], splitPemCerts(snap.trustBundlePem))).toBe(B);
});

test('an issuer that does not chain to the new bundle, or a half-written pair, is refused and the old one kept', async () => {
  const issuer = await load();
  let changes = 0;
  issuer.onChange(() => changes++);
  // The issuer moves to B while the bundle still holds only A: proxies could not verify its certificates.
  await setIssuer(interB);
  expect(await issuer.reload()).toBe(false);
  expect(issuerTrust(issuer).signingRootFingerprint).toBe(A);
  expect(logs.filter((l) => l.includes('ISSUER_RELOAD_REJECTED'))).toHaveLength(1);
  expect(logs.at(-1)).toMatch(/does not chain to any trust anchor/);
  // The same rejected files are not re-read and re-logged on every tick.
  expect(await issuer.reload()).toBe(false);
  expect(logs.filter((l) => l.includes('ISSUER_RELOAD_REJECTED'))).toHaveLength(1);
  // The bundle catches up: now it loads.
  await put('bundle.crt', rootA.certPem + rootB.certPem);
  expect(await issuer.reload()).toBe(true);
  expect(issuerTrust(issuer).signingRootFingerprint).toBe(B);

  // tls.crt replaced, tls.key not yet: refused, then taken once the key lands.
  await put('tls.crt', interA.certPem);
  expect(await issuer.reload()).toBe(false);
  expect(logs.at(-1)).toMatch(/private key does not match/);
  expect(issuerTrust(issuer).signingRootFingerprint).toBe(B);
  await put('tls.key', interA.keyPem);
  expect(await issuer.reload()).toBe(true);
  expect(issuerTrust(issuer).signingRootFingerprint).toBe(A);
  expect(changes).toBe(2);
  // Nothing in the logs carries key material.
  expect(logs.join('\n')).not.toContain('PRIVATE KEY');
});

test('an expired issuer is refused', async () => {
  const clock = new FakeClock(Date.now());
  const issuer = await load(50, clock);
  const old = createIntermediateCa(rootA, { trustDomain: TD, now: new Date(Date.now() - 3 * 86_400_000), validityMs: 86_400_000 });
  await setIssuer(old);
  expect(await issuer.reload()).toBe(false);
  expect(logs.at(-1)).toMatch(/not valid now/);
});

test('polling picks changes up on its own; the serving certificate moves to a new issuer at once; metrics follow the bundle', async () => {
  const clock = new FakeClock(Date.now());
  const issuer = await load(1000, clock);
  const registry = new Registry();
  new IdentityMetrics(registry, issuer);
  const serving = new ServingIdentity({ issuer, spiffeId: `spiffe://${TD}/ns/wren-system/sa/wren-control-plane`, ttlMs: 86_400_000, clock, random: seededRandom(1), logger: silentLogger });
  serving.start();
  issuer.start();
  try {
    const rootOfServing = () => chainRootFingerprint([serving.certificate.certPem, ...serving.certificate.chainPems], [rootA.certPem, rootB.certPem]);
    expect(rootOfServing()).toBe(A);
    await put('bundle.crt', rootA.certPem + rootB.certPem);
    const serial = serving.certificate.serial;
    const changed = () => new Promise<void>((r) => { const off = issuer.onChange(() => { off(); r(); }); });
    let next = changed();
    clock.advance(1000); // the poll timer fires: no explicit reload()
    await next;
    expect(issuerTrust(issuer).trustAnchorFingerprints).toEqual([A, B]);
    expect(serving.certificate.serial).toBe(serial); // a bundle change alone needs no new certificate
    expect(await registry.getSingleMetricAsString('wren_identity_trust_anchor_expiry_timestamp_seconds')).toContain(B);

    await setIssuer(interB);
    await put('bundle.crt', rootB.certPem);
    next = changed();
    clock.advance(1000);
    await next;
    expect(rootOfServing()).toBe(B);
    const anchors = await registry.getSingleMetricAsString('wren_identity_trust_anchor_expiry_timestamp_seconds');
    expect(anchors).toContain(B);
    expect(anchors).not.toContain(A); // the removed anchor's series is gone
  } finally {
    serving.stop();
    issuer.stop();
  }
});
