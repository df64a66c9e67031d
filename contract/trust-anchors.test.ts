import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { certInfo, createIntermediateCa, createRootCa, issueWorkload, CertificateAuthority } from '../certs/index.js';
import { loadDiscoveryProto, type DiscoveryResponse } from './discovery.js';
import {
  bundleFingerprints, certFingerprint, chainRootFingerprint, identityReportOf, normalizeFingerprint, parseTrustBundleState, trustBundleProblem, trustMismatch,
} from './trust-anchors.js';

const TD = 'cluster.local';
const oldRoot = createRootCa({ trustDomain: TD, commonName: 'old' });
const newRoot = createRootCa({ trustDomain: TD, commonName: 'new' });
// Same subject as newRoot, other key: only the signature tells them apart.
const twin = createRootCa({ trustDomain: TD, commonName: 'new' });
const inter = createIntermediateCa(newRoot, { trustDomain: TD });
const leafOld = issueWorkload(new CertificateAuthority({ ...oldRoot, trustDomain: TD }), `spiffe://${TD}/ns/a/sa/b`);
const leafNew = issueWorkload(new CertificateAuthority({ ...inter, chainPems: [], trustDomain: TD }), `spiffe://${TD}/ns/a/sa/b`);
const OLD = certFingerprint(oldRoot.certPem);
const NEW = certFingerprint(newRoot.certPem);

test('fingerprints are what openssl prints', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wren-fp-'));
  try {
    writeFileSync(join(dir, 'r.pem'), newRoot.certPem);
    const out = execFileSync('openssl', ['x509', '-in', join(dir, 'r.pem'), '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    expect(out.trim().split('=')[1]).toBe(NEW);
    expect(normalizeFingerprint(out)).toBe(NEW);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  expect(NEW).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  expect(normalizeFingerprint(NEW.replace(/:/g, '').toLowerCase())).toBe(NEW);
  expect(normalizeFingerprint(`sha256:${NEW.replace(/:/g, '')}`)).toBe(NEW);
  expect(normalizeFingerprint(NEW.slice(3))).toBeNull();
  expect(normalizeFingerprint('not a fingerprint')).toBeNull();
  expect(bundleFingerprints(oldRoot.certPem + newRoot.certPem + oldRoot.certPem)).toEqual([OLD, NEW]);
});

test('chainRootFingerprint follows signatures, not names', () => {
  expect(chainRootFingerprint([leafOld.certPem], [oldRoot.certPem, newRoot.certPem])).toBe(OLD);
  expect(chainRootFingerprint([leafNew.certPem, inter.certPem], [oldRoot.certPem, newRoot.certPem])).toBe(NEW);
  // Without the intermediate, or without its root, the chain ends nowhere.
  expect(chainRootFingerprint([leafNew.certPem], [newRoot.certPem])).toBeNull();
  expect(chainRootFingerprint([leafNew.certPem, inter.certPem], [oldRoot.certPem])).toBeNull();
  // A root with the same subject but another key does not terminate the chain.
  expect(chainRootFingerprint([leafNew.certPem, inter.certPem], [twin.certPem])).toBeNull();
  expect(chainRootFingerprint([leafNew.certPem, inter.certPem], [twin.certPem, newRoot.certPem])).toBe(NEW);
  // A root is its own chain's root; an intermediate chains to its root.
  expect(chainRootFingerprint([newRoot.certPem], [oldRoot.certPem, newRoot.certPem])).toBe(NEW);
  expect(chainRootFingerprint([inter.certPem], [newRoot.certPem])).toBe(NEW);
  expect(chainRootFingerprint([], [newRoot.certPem])).toBeNull();
});

test('identityReportOf and trustMismatch: what a proxy reports, and when it must renew', () => {
  const r = identityReportOf({ certChainPem: leafOld.certPem, trustBundlePem: oldRoot.certPem + newRoot.certPem });
  expect(r).toEqual({ trustAnchorFingerprints: [OLD, NEW], chainRootFingerprint: OLD, leafSerial: certInfo(leafOld.certPem).serial, notAfterMs: expect.any(Number) });
  expect(r.notAfterMs).toBe(Math.floor(leafOld.notAfter.getTime() / 1000) * 1000);

  const state = (anchors: string[], signing: string) => ({ trustAnchorFingerprints: anchors, signingRootFingerprint: signing, reissueSpreadMs: 1000 });
  expect(trustMismatch(r, state([OLD, NEW], OLD))).toBeNull();
  expect(trustMismatch(r, state([NEW, OLD], OLD))).toBeNull(); // order does not matter
  expect(trustMismatch(r, state([OLD], OLD))).toMatch(/0 root\(s\) to add, 1 to remove/);
  expect(trustMismatch(r, state([OLD, NEW], NEW))).toMatch(/chains to .* but the CA now signs under/);
  expect(trustMismatch(r, state([OLD, NEW], ''))).toBeNull();
});

test('parseTrustBundleState canonicalizes fingerprints and refuses garbage', () => {
  expect(parseTrustBundleState({ trustAnchorFingerprints: [NEW.replace(/:/g, '').toLowerCase()], signingRootFingerprint: NEW, reissueSpreadMs: 5 }, 't')).toEqual({
    trustAnchorFingerprints: [NEW], signingRootFingerprint: NEW, reissueSpreadMs: 5,
  });
  expect(() => parseTrustBundleState({ trustAnchorFingerprints: ['zz'], signingRootFingerprint: '', reissueSpreadMs: 0 }, 't')).toThrow('t.trustAnchorFingerprints[0]: expected a SHA-256 fingerprint');
  expect(() => parseTrustBundleState({ trustAnchorFingerprints: [], signingRootFingerprint: '', reissueSpreadMs: 0 }, 't')).toThrow('t.trustAnchorFingerprints: empty');
  expect(() => parseTrustBundleState({ trustAnchorFingerprints: [NEW], signingRootFingerprint: 'x', reissueSpreadMs: 0 }, 't')).toThrow('t.signingRootFingerprint');
});

test('on the wire: the trust state appended to shared response bytes decodes as one response; IdentityReport is a request kind', () => {
  const proto = loadDiscoveryProto();
  const base: DiscoveryResponse = { version: 'v1', nonce: 'n', full: true, baseVersion: '', services: [], removedServices: [], endpointDeltas: [] };
  const trustBundle = { trustAnchorFingerprints: [OLD, NEW], signingRootFingerprint: NEW, reissueSpreadMs: 1500 };
  const suffix = proto.encodeResponse({ trustBundle } as DiscoveryResponse);
  const got = proto.decodeResponse(Buffer.concat([proto.encodeResponse(base), suffix]));
  expect(got).toMatchObject({ version: 'v1', nonce: 'n', full: true, trustBundle });
  const stream = proto.service.Stream;
  const report = { trustAnchorFingerprints: [NEW], chainRootFingerprint: NEW, leafSerial: 'ab', notAfterMs: 1_700_000_000_000 };
  expect(stream.requestDeserialize(stream.requestSerialize({ identityReport: report }))).toMatchObject({ kind: 'identityReport', identityReport: report });
});

test('trustBundleProblem: one or more CA certificates (text around them allowed), nothing else', () => {
  expect(trustBundleProblem(oldRoot.certPem)).toBeNull();
  expect(trustBundleProblem(`# old root\n${oldRoot.certPem}# new root\n${newRoot.certPem}${inter.certPem}`)).toBeNull();
  expect(trustBundleProblem('')).toBe('holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  expect(trustBundleProblem(leafOld.keyPem)).toBe('holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  expect(trustBundleProblem(`${oldRoot.certPem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`)).toBe('certificate 2 of 2 is not a valid X.509 certificate');
  expect(trustBundleProblem(leafOld.certPem)).toMatch(/^certificate 1 of 1 \(URI:spiffe:\/\/cluster\.local\/ns\/a\/sa\/b\) is not a CA certificate/);
});
