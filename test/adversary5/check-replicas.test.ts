import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCommand } from '../../cli/check/check-command.js';
import type { CheckOutcome } from '../../cli/check/check-result.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';
import { issuerWithoutCertify } from '../helpers/issuer-without-certify.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { replaceFile } from '../helpers/replace-file.js';

/**
 * ADV5-3: `wren check` judges the trust anchors and the issuer of ONE control-plane replica
 * (cli/check/mesh-checks.ts: `trust.find((x) => x.d.controlPlane)`; "every replica signs with
 * the same CA and hands out the same bundle, so one suffices to judge them"), i.e. it assumes
 * exactly what it is there to check.
 *
 * What an operator does: runs two replicas (the install's default, manifests/install/30-control-plane.yaml:
 * "both replicas must sign with the same CA") and, mid-rotation or by a bad rollout, one replica
 * has another issuer and trust bundle (its Secret/ConfigMap mount is stale, or it was started with
 * other --ca-dir / --trust-bundle). Proxies certified by one replica are then not trusted by
 * proxies that got the other's bundle: mTLS between them fails. What happens: `wren check
 * --admin A --admin B` prints ✓ trust-anchors and ✓ issuer and exits 0. What should happen:
 * a ✗ naming the replicas that disagree (the check's own contract in docs/operations.md is to
 * catch a broken mesh; `linkerd check` compares the issuer/anchors the control plane
 * actually uses).
 */
let root: string;
const cps: ControlPlane[] = [];

async function replica(pki: TestPki, dir: string): Promise<ControlPlane> {
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(3), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir, watchDebounceMs: 10, rescanMs: 5_000 }),
    identity: issuerWithoutCertify(pki),
  });
  cps.push(cp);
  await cp.whenReady();
  return cp;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-adv5-check-'));
  await mkdir(join(root, 'mesh'));
  await replaceFile(join(root, 'mesh', 'mtls.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: default }\nspec:\n  mtls: { mode: STRICT }\n');
});

afterAll(async () => {
  await Promise.all(cps.map((c) => c.close(100)));
  await rm(root, { recursive: true, force: true });
});

test('ADV5-3: two replicas with different CAs and trust bundles: wren check must not say ✓', async () => {
  // ADVERSARY: ADV5-3
  const a = await replica(testPki(), join(root, 'mesh'));
  const b = await replica(testPki(), join(root, 'mesh'));
  let out = '';
  const code = await checkCommand(['--output', 'json', '--admin', `127.0.0.1:${a.adminPort}`, '--admin', `127.0.0.1:${b.adminPort}`], (s) => (out += s), () => undefined);
  const checks = (JSON.parse(out) as { checks: CheckOutcome[] }).checks;
  const trust = checks.filter((c) => c.id === 'trust-anchors' || c.id === 'issuer');
  // On main: both ✓ and exit 0, though replica A's proxies and replica B's cannot verify each other.
  expect({ code, trustChecksFailing: trust.some((c) => c.status === 'fail') }).toEqual({ code: 1, trustChecksFailing: true });
});
