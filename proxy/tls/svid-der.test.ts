import { X509Certificate } from 'node:crypto';
import { createRootCa, CertificateAuthority, issueWorkload } from '../../certs/index.js';
import { parseExtensions } from '../../certs/x509.js';
import { seededRandom } from '../../common/clock.js';
import { craftLeaf, type AltName, type CraftOptions } from '../../test/helpers/crafted-leaf.js';
import { svidFacts } from './svid-der.js';

/**
 * The sidecar's own DER reading of a leaf (svid-der.ts) against node-forge's (certs/x509.ts,
 * what the control plane and the CA use): the same facts for every kind of leaf the
 * identity checks see, and, fed mutated certificates, it never throws and never reads
 * facts that forge's full parse of the same bytes disagrees with.
 */
const root = createRootCa({ trustDomain: 'cluster.local' });
const ID = 'spiffe://cluster.local/ns/default/sa/client';

function forgeFacts(der: Buffer): { ca: boolean; signs: boolean; uris: readonly string[] } {
  const e = parseExtensions(der);
  const u = e.keyUsage?.usages ?? [];
  return { ca: e.basicConstraints?.ca === true, signs: u.includes('keyCertSign') || u.includes('cRLSign'), uris: e.san?.uris ?? [] };
}

const leaves: [string, AltName[], CraftOptions][] = [
  ['one URI', [{ type: 6, value: ID }], {}],
  ['DNS, URI and IP', [{ type: 2, value: 'a.default.svc' }, { type: 6, value: ID }, { type: 7, ip: '10.0.0.1' }], {}],
  ['two URIs', [{ type: 6, value: ID }, { type: 6, value: `${ID}x` }], {}],
  ['no URI', [{ type: 2, value: 'x' }], {}],
  ['a CA', [{ type: 6, value: ID }], { ca: true }],
  ['keyCertSign', [{ type: 6, value: ID }], { keyCertSign: true }],
  ['cRLSign', [{ type: 6, value: ID }], { ku: { cRLSign: true } }],
  ['a private extension that is not DER', [{ type: 6, value: ID }], { extra: [{ id: '1.3.6.1.4.1.99999.1', critical: false, value: '\x01' }] }],
  ['a URI with bytes above 0x7f', [{ type: 6, value: `${ID}\xe9` }], {}],
];

test.each(leaves)('%s: the same facts as node-forge', (_name, alt, o) => {
  const der = new X509Certificate(craftLeaf(root, alt, o).certPem).raw;
  expect(svidFacts(der)).toEqual(forgeFacts(der));
});

test("the mesh CA's own workload certificate (and a CA certificate: the root)", () => {
  const ca = new CertificateAuthority({ ...root, trustDomain: 'cluster.local' });
  const w = new X509Certificate(issueWorkload(ca, ID).certPem).raw;
  expect(svidFacts(w)).toEqual({ ca: false, signs: false, uris: [ID] });
  const r = new X509Certificate(root.certPem).raw;
  expect(svidFacts(r)).toEqual(forgeFacts(r));
  expect(svidFacts(r)?.ca).toBe(true);
});

test('mutated certificates: never a throw; when it reads facts, forge reads the same of those bytes', () => {
  const random = seededRandom(13);
  const base = new X509Certificate(craftLeaf(root, [{ type: 2, value: 'a' }, { type: 6, value: ID }], { extra: [{ id: '1.3.6.1.4.1.99999.1', value: '\x04\x00' }] }).certPem).raw;
  let read = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(base);
    const flips = 1 + Math.floor(random() * 4);
    for (let j = 0; j < flips; j++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
    const cut = random() < 0.1 ? b.subarray(0, Math.floor(random() * b.length)) : b;
    const mine = svidFacts(cut);
    if (mine === null) continue;
    read++;
    let theirs: ReturnType<typeof forgeFacts> | undefined;
    try {
      theirs = forgeFacts(cut);
    } catch {
      theirs = undefined; // forge refuses what this reader took: only facts both read are compared
    }
    if (theirs) expect(mine).toEqual(theirs);
  }
  // Most single-byte changes land in the signature or key bits, which neither reads.
  expect(read).toBeGreaterThan(1000);
});
