import { CertificateAuthority, createRootCa, issueWorkload } from '../../certs/index.js';
import { createLogger } from '../../common/logger.js';
import { certFingerprint } from '../../contract/trust-anchors.js';
import { TlsIdentity } from '../tls/tls-identity.js';
import { TrustSync } from './trust-sync.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/a/sa/b`;
const oldRoot = createRootCa({ trustDomain: TD, commonName: 'old' });
const newRoot = createRootCa({ trustDomain: TD, commonName: 'new' });
const OLD = certFingerprint(oldRoot.certPem);
const NEW = certFingerprint(newRoot.certPem);
const material = (root: typeof oldRoot, bundle: string) => {
  const w = issueWorkload(new CertificateAuthority({ ...root, trustDomain: TD }), ID);
  return { keyPem: w.keyPem, certChainPem: w.certPem, trustBundlePem: bundle };
};
const state = (anchors: string[], signing: string, spread = 4000) => ({ trustAnchorFingerprints: anchors, signingRootFingerprint: signing, reissueSpreadMs: spread });

function setup(withRenew = true) {
  const tls = new TlsIdentity(material(oldRoot, oldRoot.certPem));
  const asked: { delayMs: number; reason: string }[] = [];
  const logs: string[] = [];
  const sync = new TrustSync({
    tls, random: () => 0.5, logger: createLogger({ sink: (l) => void logs.push(l) }),
    renewSoon: withRenew ? (delayMs, reason) => void asked.push({ delayMs, reason }) : null,
  });
  return { tls, asked, logs, sync };
}

test('a matching state asks for nothing; a new bundle asks for one renewal within the spread', () => {
  const { tls, asked, sync } = setup();
  sync.onPush(state([OLD], OLD));
  expect(asked).toEqual([]);
  sync.onPush(state([OLD, NEW], OLD));
  expect(asked).toEqual([{ delayMs: 2000, reason: expect.stringMatching(/trust bundle differs \(1 root\(s\) to add, 0 to remove\)/) }]);
  // The same push again (a reconnect) while the renewal is pending: not asked twice.
  sync.onPush(state([OLD, NEW], OLD));
  expect(asked).toHaveLength(1);
  // The renewal brought the two-root bundle: in line, nothing more.
  tls.rotate(material(oldRoot, oldRoot.certPem + newRoot.certPem));
  sync.onRotate();
  expect(asked).toHaveLength(1);
  expect(sync.mismatch()).toBeNull();
  // The CA signs under the new root: the certificate must move.
  sync.onPush(state([OLD, NEW], NEW));
  expect(asked.at(-1)?.reason).toMatch(/chains to .* but the CA now signs under/);
  tls.rotate(material(newRoot, oldRoot.certPem + newRoot.certPem));
  sync.onRotate();
  expect(sync.mismatch()).toBeNull();
  expect(sync.report()).toMatchObject({ trustAnchorFingerprints: [OLD, NEW], chainRootFingerprint: NEW });
});

test('a renewal that did not fix it (another replica answered) is retried with backoff, not in a loop', () => {
  const { tls, asked, sync } = setup();
  sync.onPush(state([OLD, NEW], OLD));
  for (let i = 0; i < 4; i++) {
    tls.rotate(material(oldRoot, oldRoot.certPem)); // Certify answered with the old bundle again
    sync.onRotate();
  }
  // 2000 (spread * 0.5), then the renewal backoff 1 s, 2 s, 4 s, 8 s with equal jitter at 0.5 (3/4 of the cap).
  expect(asked.map((a) => a.delayMs)).toEqual([2000, 750, 1500, 3000, 6000]);
  tls.rotate(material(oldRoot, oldRoot.certPem + newRoot.certPem));
  sync.onRotate();
  expect(asked).toHaveLength(5);
  // A later, different push starts again from the spread.
  sync.onPush(state([NEW], OLD));
  expect(asked.at(-1)?.delayMs).toBe(2000);
});

test('certificates from files cannot be renewed: the mismatch is logged once per state', () => {
  const { logs, sync } = setup(false);
  sync.onPush(state([OLD, NEW], OLD));
  sync.onPush(state([OLD, NEW], OLD));
  expect(logs.filter((l) => l.includes('TRUST_BUNDLE_STALE'))).toHaveLength(1);
  sync.onPush(state([NEW], NEW));
  expect(logs.filter((l) => l.includes('TRUST_BUNDLE_STALE'))).toHaveLength(2);
});
