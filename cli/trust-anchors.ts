/**
 * `wren trust-anchors`: the checks between the steps of a trust-anchor rotation
 * (docs/trust-anchor-rotation.md). `check` reads GET /debug/trust from each control-plane
 * replica's admin port — what the CA hands out, and per connected proxy the roots it
 * trusts and the root its certificate chains to (the proxies' IdentityReports) — and
 * exits 0 only when the step may go on. Every replica must be given: each sees only the
 * proxies connected to it. Exit codes: 0 ready, 1 not ready (or unreachable), 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { splitPemCerts } from '../certs/index.js';
import { normalizeFingerprint, short } from '../contract/trust-anchors.js';
import { directReplica, timeoutMsOf } from './control-plane-admin.js';
import { printable, printableJson } from '../common/printable.js';
import type { DebugTrustProxy } from '../control-plane/discovery/subscriber.js';

type Out = (s: string) => void;

export const TRUST_ANCHORS_USAGE = `Usage: wren trust-anchors check --admin HOST:PORT [--admin HOST:PORT ...] CRITERIA [--json]
       wren trust-anchors fingerprint FILE...

check: is every proxy connected to these control-plane replicas ready for the next step?
  --root NEW            every proxy trusts NEW (and the control plane hands it out):
                        ready to switch the issuer (step 3)
  --root NEW --uses     also every proxy's certificate chains to NEW (and the CA signs
                        under it): ready to remove the old root (step 4)
  --old OLD             no proxy's certificate chains to OLD any more
  --old OLD --removed   also no proxy (nor the control plane) trusts OLD: rotation done
  --restart-safe        with --root: also every proxy's configured bundle (WREN_TRUST_BUNDLE,
                        what it verifies the control plane with after a restart) has NEW
  NEW and OLD are PEM files (the first certificate counts) or SHA-256 fingerprints.

Options:
  --admin HOST:PORT     a control-plane admin address, HOST an IP or localhost (repeat for every replica)
  --allow-empty         ready even when no proxy is connected (default: not ready)
  --timeout DURATION    per request, e.g. 5s or 500ms (a bare number is seconds; default 5s)
  --json                machine-readable output
  -h, --help            show this help

Exit codes: 0 ready, 1 not ready or a replica unreachable, 2 bad usage.
`;

class UsageError extends Error {}

export interface Criteria {
  readonly root: string | null;
  readonly uses: boolean;
  readonly old: string | null;
  readonly removed: boolean;
  readonly allowEmpty: boolean;
  /** Also require NEW in each proxy's startup (configured) bundle. */
  readonly restartSafe?: boolean;
}

/** One replica's GET /debug/trust. */
export interface TrustDump {
  readonly controlPlane: { readonly trustAnchors: readonly { readonly fingerprint: string }[]; readonly signingRoot: string } | null;
  readonly proxies: readonly DebugTrustProxy[];
}

export interface ProxyVerdict {
  readonly admin: string;
  readonly identity: string | null;
  readonly pod: string | null;
  readonly reported: boolean;
  readonly trustsRoot: boolean | null;
  readonly usesRoot: boolean | null;
  readonly trustsOld: boolean | null;
  readonly usesOld: boolean | null;
  /** NEW is in the bundle it verifies the control plane with after a restart; null when unknown or no --root. */
  readonly restartSafe: boolean | null;
  readonly leafSerial: string | null;
  readonly notAfter: string | null;
  /** Why this proxy holds the step back; [] when it does not. */
  readonly blocking: readonly string[];
}

export interface CheckResult {
  readonly ready: boolean;
  readonly phase: 'trusted' | 'in-use' | 'old-unused' | 'old-removed';
  readonly root: string | null;
  readonly old: string | null;
  readonly controlPlanes: readonly { readonly admin: string; readonly handsOutRoot: boolean | null; readonly signsUnderRoot: boolean | null; readonly handsOutOld: boolean | null; readonly blocking: readonly string[] }[];
  readonly proxies: readonly ProxyVerdict[];
  readonly summary: string;
}

/** The verdict for the dumps of every replica (pure; unit-tested). */
export function evaluate(dumps: readonly { admin: string; dump: TrustDump }[], c: Criteria): CheckResult {
  const phase = c.removed ? 'old-removed' : c.old && !c.root ? 'old-unused' : c.uses ? 'in-use' : c.root ? 'trusted' : 'old-unused';
  const controlPlanes = dumps.map(({ admin, dump }) => {
    const cp = dump.controlPlane;
    const anchors = new Set(cp?.trustAnchors.map((a) => a.fingerprint) ?? []);
    const handsOutRoot = c.root && cp ? anchors.has(c.root) : null;
    const signsUnderRoot = c.root && cp ? cp.signingRoot === c.root : null;
    const handsOutOld = c.old && cp ? anchors.has(c.old) : null;
    const blocking: string[] = [];
    if (!cp) blocking.push('the control plane is not a CA (no identity service)');
    if (handsOutRoot === false) blocking.push('the control plane does not hand out the new root yet (bundle file or ConfigMap not updated or not reloaded)');
    if (c.uses && signsUnderRoot === false) blocking.push('the CA does not sign under the new root yet (issuer Secret or --ca-dir not switched or not reloaded)');
    if (c.removed && handsOutOld === true) blocking.push('the control plane still hands out the old root');
    return { admin, handsOutRoot, signsUnderRoot, handsOutOld, blocking };
  });
  const proxies: ProxyVerdict[] = dumps.flatMap(({ admin, dump }) =>
    dump.proxies.map((p) => {
      const trusts = new Set(p.trusts);
      const v = {
        trustsRoot: c.root && p.reported ? trusts.has(c.root) : null,
        usesRoot: c.root && p.reported ? p.uses === c.root : null,
        trustsOld: c.old && p.reported ? trusts.has(c.old) : null,
        usesOld: c.old && p.reported ? p.uses === c.old : null,
        restartSafe: c.root && p.trustsAtStartup ? p.trustsAtStartup.includes(c.root) : null,
      };
      const blocking: string[] = [];
      if (!p.reported) blocking.push('has not reported its certificate yet');
      if (v.trustsRoot === false) blocking.push('does not trust the new root');
      if (c.uses && v.usesRoot === false) blocking.push('presents a certificate from another root');
      if (v.usesOld === true) blocking.push('still presents a certificate from the old root');
      if (c.removed && v.trustsOld === true) blocking.push('still trusts the old root');
      if (c.restartSafe && v.restartSafe !== true) blocking.push('would not reach the control plane after a restart (its configured bundle lacks the new root: restart the pod)');
      return { admin, identity: p.identity, pod: p.pod, reported: p.reported, ...v, leafSerial: p.leafSerial, notAfter: p.notAfter, blocking };
    }),
  );
  const n = proxies.length;
  const count = (f: (p: ProxyVerdict) => boolean | null) => proxies.filter((p) => f(p) === true).length;
  const facts: string[] = [];
  if (c.root) facts.push(`${count((p) => p.trustsRoot)}/${n} proxies trust the new root ${short(c.root)}, ${count((p) => p.usesRoot)}/${n} use it, ${count((p) => p.restartSafe)}/${n} have it in their configured bundle`);
  if (c.old) facts.push(`${count((p) => p.usesOld)}/${n} still use the old root ${short(c.old)}, ${count((p) => p.trustsOld)}/${n} still trust it`);
  const blockedCps = controlPlanes.filter((x) => x.blocking.length > 0);
  const blockedProxies = proxies.filter((p) => p.blocking.length > 0);
  const empty = n === 0 && !c.allowEmpty;
  const ready = blockedCps.length === 0 && blockedProxies.length === 0 && !empty;
  const next = { trusted: 'ready to reissue: switch the issuer to the new root (step 3)', 'in-use': 'ready to remove the old root from the bundle (step 4)', 'old-unused': 'no proxy uses the old root: it may be removed (step 4)', 'old-removed': 'rotation complete: no proxy trusts or uses the old root' }[phase];
  let verdict: string;
  if (ready) verdict = `READY — ${next}`;
  else if (empty) verdict = 'NOT READY — no proxy is connected to the given control plane(s), so nothing confirms the step (pass every replica with --admin, or --allow-empty)';
  else {
    const why = [...blockedCps.map((x) => `${x.admin}: ${x.blocking.join('; ')}`), ...blockedProxies.slice(0, 5).map((p) => `${p.pod ?? p.identity ?? '?'} ${p.blocking.join('; ')}`)];
    if (blockedProxies.length > 5) why.push(`and ${blockedProxies.length - 5} more proxies`);
    verdict = `NOT READY — ${blockedProxies.length}/${n} proxies not there yet:\n  ${why.join('\n  ')}`;
  }
  return { ready, phase, root: c.root, old: c.old, controlPlanes, proxies, summary: `${facts.join('; ')}\n${verdict}` };
}

/** A fingerprint, or the first certificate of a PEM file. */
export function rootArg(v: string, flag: string): string {
  const fp = normalizeFingerprint(v);
  if (fp) return fp;
  let text: string;
  try {
    text = readFileSync(v, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag}: not a SHA-256 fingerprint and cannot read ${v}: ${(e as Error).message}`);
  }
  const first = splitPemCerts(text)[0];
  if (!first) throw new UsageError(`${flag}: ${v} holds no PEM certificate`);
  return new X509Certificate(first).fingerprint256;
}

const yn = (v: boolean | null): string => (v === null ? '-' : v ? 'yes' : 'no');

function render(r: CheckResult): string {
  const rows = [['PROXY', 'POD', ...(r.root ? ['TRUSTS NEW', 'USES NEW', 'RESTART-SAFE'] : []), ...(r.old ? ['USES OLD', 'TRUSTS OLD'] : []), 'CERT EXPIRES']];
  for (const p of r.proxies)
    rows.push([printable(p.identity ?? '?'), printable(p.pod ?? '?'), ...(r.root ? [yn(p.trustsRoot), yn(p.usesRoot), yn(p.restartSafe)] : []), ...(r.old ? [yn(p.usesOld), yn(p.trustsOld)] : []), p.reported ? (p.notAfter ?? '?') : '(no report)']);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const table = rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
  const cps = r.controlPlanes.map((c) => `control plane ${c.admin}: ${[c.handsOutRoot !== null ? `hands out new root: ${yn(c.handsOutRoot)}` : '', c.signsUnderRoot !== null ? `signs under new root: ${yn(c.signsUnderRoot)}` : '', c.handsOutOld !== null ? `hands out old root: ${yn(c.handsOutOld)}` : ''].filter(Boolean).join(', ')}`);
  // Identities and pods are the proxies' claims (and the summary names them): every line printable.
  return `${cps.join('\n')}\n\n${table}\n\n${r.summary}\n`.split('\n').map(printable).join('\n');
}

async function fetchDump(admin: string, timeoutMs: number): Promise<TrustDump> {
  // directReplica: --timeout over the whole answer, a DNS name sent as its address, and a
  // 429/503 with Retry-After waited out within bounds (cli/retry-after.ts).
  const res = await directReplica(admin, timeoutMs).get('/debug/trust');
  if (res.status !== 200) throw new Error(`GET /debug/trust answered ${res.status}`);
  const body = JSON.parse(res.body) as TrustDump;
  if (!body || !Array.isArray(body.proxies)) throw new Error('GET /debug/trust: unexpected body (a control plane older than trust-anchor checks?)');
  return body;
}

/** The same --timeout as the other commands that read the control plane: a duration, or seconds. */
function parseTimeout(v: string | undefined): number {
  try {
    return timeoutMsOf(v);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

async function check(argv: string[], out: Out, err: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      admin: { type: 'string', multiple: true }, root: { type: 'string' }, old: { type: 'string' }, uses: { type: 'boolean' }, removed: { type: 'boolean' },
      'allow-empty': { type: 'boolean' }, 'restart-safe': { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out(TRUST_ANCHORS_USAGE);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const admins = values.admin ?? [];
  if (admins.length === 0) throw new UsageError('--admin HOST:PORT is required (the control plane admin port, 15014; every replica)');
  for (const a of admins) if (!/^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):\d{1,5}$/.test(a)) throw new UsageError(`--admin: expected HOST:PORT, got ${JSON.stringify(a)}`);
  if (!values.root && !values.old) throw new UsageError('give --root NEW (and --uses) or --old OLD (and --removed)');
  if (values.uses && !values.root) throw new UsageError('--uses needs --root');
  if (values.removed && !values.old) throw new UsageError('--removed needs --old');
  if (values['restart-safe'] && !values.root) throw new UsageError('--restart-safe needs --root');
  const criteria: Criteria = {
    root: values.root ? rootArg(values.root, '--root') : null, old: values.old ? rootArg(values.old, '--old') : null,
    uses: values.uses ?? false, removed: values.removed ?? false, allowEmpty: values['allow-empty'] ?? false, restartSafe: values['restart-safe'] ?? false,
  };
  if (criteria.root && criteria.root === criteria.old) throw new UsageError('--root and --old are the same certificate');
  const timeoutMs = parseTimeout(values.timeout);
  const dumps: { admin: string; dump: TrustDump }[] = [];
  for (const admin of admins) {
    try {
      dumps.push({ admin, dump: await fetchDump(admin, timeoutMs) });
    } catch (e) {
      // The message can carry the server's text (a JSON.parse error quotes the body): escaped.
      err(`wren trust-anchors check: cannot read ${admin}/debug/trust: ${printable((e as Error).message)}\n`);
      return 1;
    }
  }
  const result = evaluate(dumps, criteria);
  out(values.json ? printableJson(result, 2) + '\n' : render(result));
  return result.ready ? 0 : 1;
}

function fingerprint(argv: string[], out: Out): number {
  if (argv.length === 0 || argv.includes('-h') || argv.includes('--help')) throw new UsageError('fingerprint needs one or more PEM files');
  for (const file of argv) {
    let pems: string[];
    try {
      pems = splitPemCerts(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
    }
    if (pems.length === 0) throw new UsageError(`${file} holds no PEM certificate`);
    for (const p of pems) {
      const c = new X509Certificate(p);
      out(`${c.fingerprint256}  ${c.subject.replace(/\n/g, ', ')}  (until ${new Date(c.validTo).toISOString()})  ${file}\n`);
    }
  }
  return 0;
}

export async function trustAnchorsCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'check') return await check(rest, out, err);
    if (sub === 'fingerprint') return fingerprint(rest, out);
    if (!sub || sub === '-h' || sub === '--help' || sub === 'help') {
      out(TRUST_ANCHORS_USAGE);
      return sub ? 0 : 2;
    }
    throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}`);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(`wren trust-anchors: ${(e as Error).message}\n\n${TRUST_ANCHORS_USAGE}`);
      return 2;
    }
    throw e;
  }
}
