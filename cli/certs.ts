/**
 * `wren certs …`: create a mesh CA, issue workload certificates from it, write a whole
 * dev mesh's PKI, and inspect certificates. Exit codes: 0 ok, 1 the operation failed,
 * 2 bad usage (unknown or missing flags).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRootCa, DEFAULT_LEAF_TTL_MS, DEFAULT_ROOT_VALIDITY_MS } from '../certs/ca.js';
import { issueWorkload, writeDevMesh, writeWorkloadFiles } from '../certs/dev-mesh.js';
import { CA_CERT_FILE, CA_KEY_FILE, loadCaDir, writePublicFile, writeSecretFile } from '../certs/files.js';
import { certInfo } from '../certs/verify.js';
import { splitPemCerts } from '../certs/x509.js';
import { duration } from '../common/schema.js';
import { NAMESPACE_PATTERN, SERVICE_ACCOUNT_PATTERN, TRUST_DOMAIN_PATTERN } from '../contract/identity.js';

type Out = (s: string) => void;
type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

const DEFAULT_TD = 'cluster.local';

class UsageError extends Error {}

const USAGE: Record<string, string> = {
  group: `Usage: wren certs <command> [flags]

Manage the mesh PKI: a root CA (trust anchor) and SPIFFE X.509 workload certificates.

Commands:
  ca         create a root CA (ca.crt, ca.key) in a directory
  issue      issue a workload certificate from a CA directory
  dev-mesh   create a CA and certificates for several workloads at once
  inspect    print a certificate's identity, validity and usages as JSON

Run 'wren certs <command> --help' for a command's flags.
`,
  ca: `Usage: wren certs ca --out DIR [flags]

Creates a self-signed root CA: DIR/ca.crt (the trust bundle) and DIR/ca.key (mode 0600).

Flags:
  --out DIR               directory to write to (required)
  --trust-domain TD       SPIFFE trust domain (default ${DEFAULT_TD})
  --validity DURATION     lifetime, e.g. 87600h or 3650d (default 3650d)
  --force                 overwrite an existing ca.key
  -h, --help              show this help
`,
  issue: `Usage: wren certs issue --ca-dir DIR --namespace NS --service-account SA --out DIR [flags]

Generates a key pair and a CSR for spiffe://<td>/ns/NS/sa/SA and has the CA in --ca-dir sign it.
Writes OUT/<name>.crt (certificate followed by its chain) and OUT/<name>.key (mode 0600).

Flags:
  --ca-dir DIR            directory holding ca.crt and ca.key (required)
  --namespace NS          Kubernetes namespace (required)
  --service-account SA    Kubernetes service account (required)
  --out DIR               directory to write to (required)
  --ttl DURATION          certificate lifetime, e.g. 24h, 90m (default 24h, max 90d)
  --name NAME             file name stem (default <SA>.<NS>)
  --trust-domain TD       trust domain (default: read from ca.crt)
  -h, --help              show this help
`,
  'dev-mesh': `Usage: wren certs dev-mesh --out DIR --workload NS/SA [--workload NS/SA ...] [flags]

Creates a fresh root CA and one certificate per workload, for local development:
DIR/ca.crt, DIR/ca.key, DIR/<SA>.<NS>.crt and DIR/<SA>.<NS>.key (keys mode 0600).

Flags:
  --out DIR               directory to write to (required)
  --workload NS/SA        a workload's namespace and service account (required, repeatable)
  --trust-domain TD       SPIFFE trust domain (default ${DEFAULT_TD})
  --ttl DURATION          workload certificate lifetime (default 24h)
  --force                 replace a CA already in DIR (ca.key)
  -h, --help              show this help
`,
  inspect: `Usage: wren certs inspect FILE

Prints subject, issuer, SPIFFE ID, serial, validity, usages and SHA-256 fingerprint of each
certificate in FILE as JSON (an array when FILE holds several).

Flags:
  -h, --help              show this help
`,
};

const DAY_MS = 86_400_000;

/** "24h", "90m", "1500ms", or whole days "30d" (days are handy for CA lifetimes). */
function parseDuration(flag: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const days = /^(\d+)d$/.exec(raw.trim());
  let ms: number;
  try {
    ms = days ? Number(days[1]) * DAY_MS : duration()(raw, flag);
  } catch {
    throw new UsageError(`--${flag}: expected a duration like 24h, 90m or 30d, got ${JSON.stringify(raw)}`);
  }
  if (!(ms > 0)) throw new UsageError(`--${flag}: must be greater than zero`);
  return ms;
}

function parse(cmd: string, argv: string[], options: Options, positionals = 0): { values: Record<string, unknown>; positionals: string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: positionals > 0 }) as typeof parsed;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals])} for '${cmd}'`);
  return parsed;
}

function required(values: Record<string, unknown>, ...flags: string[]): void {
  const missing = flags.filter((f) => values[f] === undefined || values[f] === '');
  if (missing.length > 0) throw new UsageError(`missing required flag${missing.length > 1 ? 's' : ''}: ${missing.map((f) => '--' + f).join(', ')}`);
}

const str = { type: 'string' } as const;

/**
 * The names a certificate is issued to, refused here unless the proxy and the control plane
 * take them (contract/identity.ts): SPIFFE allows more (upper case in a path, '_' in a trust
 * domain), but a certificate for spiffe://my_td/... is one no Wren sidecar can be configured
 * to present.
 */
function checkName(flag: string, value: string | undefined, pattern: RegExp, what: string): void {
  if (value !== undefined && !pattern.test(value)) throw new UsageError(`--${flag}: ${JSON.stringify(value)} is not ${what}, as wren proxy and wren control-plane take it`);
}
const checkTrustDomain = (v: string | undefined) => checkName('trust-domain', v, TRUST_DOMAIN_PATTERN, 'a trust domain (lowercase letters, digits, "." and "-")');
const checkNamespace = (flag: string, v: string) => checkName(flag, v, NAMESPACE_PATTERN, 'a namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit)');
const checkServiceAccount = (flag: string, v: string) => checkName(flag, v, SERVICE_ACCOUNT_PATTERN, 'a service account name (lowercase letters, digits, "." and "-")');

async function cmdCa(argv: string[], out: Out): Promise<number> {
  const { values } = parse('ca', argv, { out: str, 'trust-domain': str, validity: str, force: { type: 'boolean' } });
  required(values, 'out');
  const dir = values.out as string;
  const td = (values['trust-domain'] as string | undefined) ?? DEFAULT_TD;
  checkTrustDomain(td);
  const validityMs = parseDuration('validity', values.validity as string | undefined, DEFAULT_ROOT_VALIDITY_MS);
  const keyFile = join(dir, CA_KEY_FILE);
  if (existsSync(keyFile) && !values.force) throw new Error(`${keyFile} already exists; pass --force to replace the CA (every issued certificate becomes untrusted)`);
  const ca = createRootCa({ trustDomain: td, validityMs });
  await writeSecretFile(keyFile, ca.keyPem);
  await writePublicFile(join(dir, CA_CERT_FILE), ca.certPem);
  const info = certInfo(ca.certPem);
  out(`wrote ${join(dir, CA_CERT_FILE)} and ${keyFile} (mode 0600)\n`);
  out(`trust domain ${td}, valid until ${info.notAfter.toISOString()}, sha256 ${info.fingerprintSha256}\n`);
  return 0;
}

async function cmdIssue(argv: string[], out: Out): Promise<number> {
  const { values } = parse('issue', argv, {
    'ca-dir': str,
    namespace: str,
    'service-account': str,
    out: str,
    ttl: str,
    name: str,
    'trust-domain': str,
  });
  required(values, 'ca-dir', 'namespace', 'service-account', 'out');
  checkTrustDomain(values['trust-domain'] as string | undefined);
  checkNamespace('namespace', values.namespace as string);
  checkServiceAccount('service-account', values['service-account'] as string);
  const ttlMs = parseDuration('ttl', values.ttl as string | undefined, DEFAULT_LEAF_TTL_MS);
  const ca = await loadCaDir(values['ca-dir'] as string, values['trust-domain'] as string | undefined);
  const ns = values.namespace as string;
  const sa = values['service-account'] as string;
  const w = issueWorkload(ca, { trustDomain: ca.trustDomain, namespace: ns, serviceAccount: sa }, ttlMs);
  const name = (values.name as string | undefined) ?? `${sa}.${ns}`;
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === '.' || name === '..') throw new UsageError(`--name: ${JSON.stringify(name)} is not a usable file name`);
  const files = await writeWorkloadFiles(values.out as string, name, w);
  out(`issued ${w.spiffeId}, valid until ${w.notAfter.toISOString()}\n`);
  out(`wrote ${files.certFile} and ${files.keyFile} (mode 0600)\n`);
  return 0;
}

async function cmdDevMesh(argv: string[], out: Out): Promise<number> {
  const { values } = parse('dev-mesh', argv, { out: str, 'trust-domain': str, workload: { type: 'string', multiple: true }, ttl: str, force: { type: 'boolean' } });
  required(values, 'out', 'workload');
  const workloads = (values.workload as string[]).map((w) => {
    const m = /^([^/]+)\/([^/]+)$/.exec(w);
    if (!m) throw new UsageError(`--workload: expected NAMESPACE/SERVICE-ACCOUNT, got ${JSON.stringify(w)}`);
    checkNamespace('workload', m[1]);
    checkServiceAccount('workload', m[2]);
    return { namespace: m[1], serviceAccount: m[2] };
  });
  const ttlMs = parseDuration('ttl', values.ttl as string | undefined, DEFAULT_LEAF_TTL_MS);
  const td = (values['trust-domain'] as string | undefined) ?? DEFAULT_TD;
  checkTrustDomain(td);
  // A fresh CA over an existing one leaves every certificate it issued untrusted: refused
  // without --force, as `wren certs ca` refuses it.
  const keyFile = join(values.out as string, CA_KEY_FILE);
  if (existsSync(keyFile) && !values.force) throw new Error(`${keyFile} already exists; pass --force to replace the CA (every certificate it issued becomes untrusted)`);
  const res = await writeDevMesh(values.out as string, { trustDomain: td, workloads, ttlMs });
  out(`wrote ${res.caCertFile} and ${res.caKeyFile} (mode 0600)\n`);
  for (const w of res.workloads) out(`${w.spiffeId}: ${w.certFile} ${w.keyFile}\n`);
  return 0;
}

async function cmdInspect(argv: string[], out: Out): Promise<number> {
  const { positionals } = parse('inspect', argv, {}, 1);
  if (positionals.length === 0) throw new UsageError('missing FILE');
  const text = await readFile(positionals[0], 'utf8');
  const blocks = splitPemCerts(text);
  if (blocks.length === 0) throw new Error(`${positionals[0]} holds no PEM certificate`);
  const infos = blocks.map((b) => certInfo(b));
  out(JSON.stringify(infos.length === 1 ? infos[0] : infos, null, 2) + '\n');
  return 0;
}

const COMMANDS: Record<string, (argv: string[], out: Out) => Promise<number>> = {
  ca: cmdCa,
  issue: cmdIssue,
  'dev-mesh': cmdDevMesh,
  inspect: cmdInspect,
};

export async function certsCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    err(USAGE.group);
    return 2;
  }
  if (sub === '-h' || sub === '--help' || sub === 'help') {
    out(USAGE.group);
    return 0;
  }
  const run = Object.hasOwn(COMMANDS, sub) ? COMMANDS[sub] : undefined;
  if (!run) {
    err(`wren certs: unknown command ${JSON.stringify(sub)}\n\n${USAGE.group}`);
    return 2;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    out(USAGE[sub]);
    return 0;
  }
  try {
    return await run(rest, out);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`wren certs ${sub}: ${e.message}\n\n${USAGE[sub]}`);
      return 2;
    }
    const code = (e as { code?: unknown }).code;
    err(`wren certs ${sub}: ${(e as Error).message}${typeof code === 'string' ? ` (${code})` : ''}\n`);
    // A bad identity or TTL is bad input from the command line, not a failed operation.
    return code === 'INVALID_SPIFFE_ID' || code === 'INVALID_TTL' ? 2 : 1;
  }
}
