import { printable } from '../../common/printable.js';
import { short } from '../../contract/trust-anchors.js';
import type { ProxyStatusRow } from '../../control-plane/discovery/proxy-status.js';
import type { SourceRejection } from '../../control-plane/sources/source-rejection.js';
import { replicaJson, type Replica } from '../control-plane-admin.js';
import { daysLeft, fail, guarded, ok, skipped, type CheckOutcome } from './check-result.js';

/**
 * The checks `wren check` makes through the control plane's admin port, in Kubernetes
 * (through the API server) and locally (`--admin`): every replica ready, its source
 * rejecting no object, its trust anchors and issuer valid with days left, every proxy
 * SYNCED and its certificate valid and chaining to a current anchor.
 */
const BEHIND = ['source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs'];
/** At most this many rejected objects are listed one per line; the rest are counted. */
const MAX_LISTED = 50;

interface TrustDoc {
  controlPlane: { trustAnchors: { fingerprint: string; subject: string; notAfter: string }[]; issuer: { subject: string; notAfter: string }; signingRoot: string } | null;
}

export async function meshChecks(replicas: readonly Replica[], now: () => number, minDays: number): Promise<CheckOutcome[]> {
  if (replicas.length === 0) {
    const why = 'no control-plane replica to ask';
    return [fail('control-plane', why, 'start the control plane, or name it with --admin HOST:PORT'), ...BEHIND.map((id) => skipped(id, why))];
  }
  const ready = await Promise.all(replicas.map((r) => r.get('/ready').then((x) => ({ r, status: x.status, body: x.body.trim() }), (e: Error) => ({ r, status: 0, body: e.message }))));
  const down = ready.filter((x) => x.status !== 200);
  const out: CheckOutcome[] = [
    down.length === 0
      ? ok('control-plane', `${replicas.length} control-plane replica(s) ready`)
      : fail('control-plane', down.map((x) => `${x.r.name}: ${x.status ? `HTTP ${x.status} ` : ''}${x.body.slice(0, 120)}`).join('; '), 'a replica that is not ready has not synced its source (see its logs and /debug/view) or is draining'),
  ];
  const up = replicas.filter((r) => !down.some((d) => d.r === r && d.status === 0));
  if (up.length === 0) return [...out, ...BEHIND.map((id) => skipped(id, 'no control-plane replica answers'))];
  out.push(await sourceRejectionsCheck(up));
  try {
    return [...out, ...(await judged(up, now(), minDays))];
  } catch (e) {
    return [...out, fail('control-plane-debug', `cannot read the control plane's debug pages: ${(e as Error).message}`, 'a control plane older than this CLI lacks /debug/proxy-status: upgrade it')];
  }
}

interface RejectedDoc {
  source: string;
  rejected: SourceRejection[];
}

const rejectionLine = (r: SourceRejection): string =>
  `${r.kind ? `${r.kind} ${r.namespace}/${r.name}: ` : ''}${r.path ? `${r.path}: ` : ''}${r.reason}${r.file ? ` (${r.file})` : ''}${r.failClosed ? `; no last good version, enforced fail-closed: ${r.failClosed}` : ''}`;

/**
 * Every object the control plane's source read and rejects now (GET /debug/rejected): an
 * invalid TrafficPolicy or route is not an error anywhere else (the control plane keeps
 * its last good version, or has none, logs it once and counts it), so a bad `kubectl
 * apply` would otherwise pass unnoticed. Replicas read the same source: each object once.
 */
function sourceRejectionsCheck(up: readonly Replica[]): Promise<CheckOutcome> {
  return guarded('source-rejections', 'a control plane older than this CLI lacks /debug/rejected: upgrade it', async () => {
    const docs = await Promise.all(up.map((r) => replicaJson<RejectedDoc>(r, '/debug/rejected')));
    const sources = [...new Set(docs.map((d) => d.source))].join(', ');
    const byObject = new Map<string, SourceRejection>();
    for (const r of docs.flatMap((d) => d.rejected)) byObject.set(rejectionLine(r), r);
    if (byObject.size === 0) return ok('source-rejections', `the ${sources} source rejects no object`);
    const all = [...byObject.values()].sort((a, b) => `${a.kind}/${a.namespace}/${a.name}/${a.file}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}/${b.file}`));
    const names = [...new Set(all.map((r) => (r.kind ? `${r.kind} ${r.namespace}/${r.name}` : (r.file ?? '?'))))];
    // Printable: a rejection quotes the object (a field name, a label), which its author chose.
    const lines = all.slice(0, MAX_LISTED).map((r) => printable(rejectionLine(r)));
    if (all.length > MAX_LISTED) lines.push(`... and ${all.length - MAX_LISTED} more (GET /debug/rejected on the control plane's admin port)`);
    const dir = docs.some((d) => d.source.startsWith('dir:'));
    // Per kind (AuthorizationPolicy, PeerAuthentication): how many are enforced fail-closed, having no last good version.
    const closedByKind = new Map<string, number>();
    for (const r of all) if (r.failClosed) closedByKind.set(r.kind, (closedByKind.get(r.kind) ?? 0) + 1);
    const closed = [...closedByKind].sort((a, b) => a[0].localeCompare(b[0])).map(([kind, n]) => `${n} ${kind} object(s)`);
    return fail(
      'source-rejections',
      `the ${sources} source rejects ${all.length} object(s), so the last good version of each (if any) stays in force${closed.length > 0 ? ` (${printable(closed.join(', '))} without one are enforced fail-closed)` : ''}: ${printable(names.slice(0, 5).join(', '))}${names.length > 5 ? ', ...' : ''}`,
      dir
        ? 'fix the named field in that file (wren check --source dir:DIR checks the files before the control plane reads them); the control plane re-reads the directory'
        : 'fix the named field and apply the object again (kubectl apply); the control plane\'s log has each rejection too (wren_cp_invalid_objects_total counts them)',
      lines,
    );
  });
}

async function judged(up: readonly Replica[], t: number, minDays: number): Promise<CheckOutcome[]> {
  const out: CheckOutcome[] = [];

  // Trust: every replica must hand out the same bundle and sign under the same root (a
  // proxy certified by one replica is verified with the bundle another pushed), so that is
  // checked first; then one replica's anchors and issuer are judged for expiry.
  const trust = await Promise.all(up.map((r) => replicaJson<TrustDoc>(r, '/debug/trust').then((d) => ({ r, d }))));
  const cp = trust.find((x) => x.d.controlPlane)?.d.controlPlane ?? null;
  const bundles = disagreement(trust, (d) => (d.controlPlane ? d.controlPlane.trustAnchors.map((a) => short(a.fingerprint)).sort().join(' + ') || 'empty bundle' : 'not a CA'));
  // Replicas may sign under different roots (mid-rotation) as long as every bundle trusts every root in use.
  const untrusted = trust.some((x) => trust.some((y) => x.d.controlPlane && !y.d.controlPlane?.trustAnchors.some((a) => a.fingerprint === x.d.controlPlane!.signingRoot)));
  const roots = untrusted ? disagreement(trust, (d) => (d.controlPlane ? `signs under ${short(d.controlPlane.signingRoot) || 'no root'}` : 'not a CA')) : '';
  if (bundles || roots) {
    const hint = 'every replica must mount the same issuer Secret and trust bundle (manifests/install/30-control-plane.yaml); fix the stale one and restart it';
    out.push(
      bundles ? fail('trust-anchors', `the replicas hand out different trust bundles: ${bundles}`, hint) : skipped('trust-anchors', 'the replicas sign under roots not every bundle trusts'),
      roots
        ? fail('issuer', `the replicas sign under roots not every replica's bundle trusts: ${roots}`, hint)
        : skipped('issuer', 'the replicas hand out different trust bundles'),
    );
  } else if (!cp) {
    out.push(fail('trust-anchors', 'the control plane is not a CA (no identity service)', 'start it with --ca-dir (or --dev-ca) and --trust-bundle'), skipped('issuer', 'the control plane is not a CA'));
  } else {
    const anchors = cp.trustAnchors.map((a) => ({ ...a, left: daysLeft(Date.parse(a.notAfter), t) }));
    const bad = anchors.filter((a) => a.left < minDays);
    out.push(
      anchors.length === 0
        ? fail('trust-anchors', 'the trust bundle is empty', 'put the root certificate(s) in the trust bundle (ConfigMap wren-trust-bundle or --trust-bundle)')
        : bad.length > 0
          ? fail('trust-anchors', bad.map((a) => `${a.subject} (${short(a.fingerprint)}) ${a.left < 0 ? 'expired' : `expires in ${a.left} day(s)`}`).join('; '), 'rotate the trust anchor (docs/trust-anchor-rotation.md) before it expires')
          : ok('trust-anchors', `${anchors.length} trust anchor(s), the first to expire in ${Math.min(...anchors.map((a) => a.left))} days`),
    );
    const issuerLeft = daysLeft(Date.parse(cp.issuer.notAfter), t);
    const inBundle = cp.signingRoot !== '' && cp.trustAnchors.some((a) => a.fingerprint === cp.signingRoot);
    out.push(
      !inBundle
        ? fail('issuer', `the issuer ${cp.issuer.subject} does not chain to a trust anchor of the bundle`, 'the issuer Secret and the trust bundle disagree: put its root in the bundle (docs/trust-anchor-rotation.md)')
        : issuerLeft < minDays
          ? fail('issuer', `the issuer ${cp.issuer.subject} ${issuerLeft < 0 ? 'has expired' : `expires in ${issuerLeft} day(s)`}`, 'renew the issuer certificate (Secret wren-identity-issuer / --ca-dir); the control plane reloads it')
          : ok('issuer', `issuer ${cp.issuer.subject} valid for ${issuerLeft} more days, chains to ${short(cp.signingRoot)}`),
    );
  }

  const rows = (await Promise.all(up.map((r) => replicaJson<{ proxies: ProxyStatusRow[] }>(r, '/debug/proxy-status')))).flatMap((d) => d.proxies);
  const name = (p: ProxyStatusRow) => `${p.pod}.${p.namespace}`;
  const unsynced = rows.filter((p) => p.status !== 'SYNCED');
  out.push(
    unsynced.length === 0
      ? ok('proxies-synced', `${rows.length} proxy(ies) SYNCED`)
      : fail('proxies-synced', unsynced.map((p) => `${name(p)} ${p.status}${p.nack ? ` (${p.nack.detail})` : p.pendingForMs !== null ? ` (waiting ${Math.round(p.pendingForMs / 1000)} s for its ACK)` : ''}`).join('; '), 'wren proxy-status shows why; a NACK names the rejected field, fix that resource (the proxy keeps its last good config)'),
  );
  const certProblems = rows.flatMap((p) => {
    if (!p.cert) return [`${name(p)} has not reported its certificate`];
    const exp = p.cert.notAfter ? Date.parse(p.cert.notAfter) : NaN;
    if (!(exp > t)) return [`${name(p)}'s certificate ${p.cert.notAfter ? `expired at ${p.cert.notAfter}` : 'has no expiry'}`];
    if (p.cert.chainsToCurrentAnchor === false) return [`${name(p)}'s certificate chains to ${p.cert.chainRoot ? short(p.cert.chainRoot) : 'none of its anchors'}, not a current trust anchor`];
    return [];
  });
  out.push(
    certProblems.length === 0
      ? ok('proxy-certs', `${rows.length} proxy certificate(s) valid and chaining to a current trust anchor`)
      : fail('proxy-certs', certProblems.join('; '), 'a proxy renews its certificate before it expires; one that does not cannot reach Certify (see its logs, wren proxy-config POD certs), or restart the pod'),
  );
  return out;
}

/** '' when every replica gives the same `key`; else the groups, `a, b: key; c: other key`. */
function disagreement(trust: readonly { r: Replica; d: TrustDoc }[], key: (d: TrustDoc) => string): string {
  const groups = new Map<string, string[]>();
  for (const { r, d } of trust) groups.set(key(d), [...(groups.get(key(d)) ?? []), r.name]);
  return groups.size > 1 ? [...groups].map(([k, names]) => `${names.join(', ')}: ${k}`).join('; ') : '';
}
