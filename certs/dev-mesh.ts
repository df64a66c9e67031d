/**
 * A whole dev mesh's PKI in one call: a root CA and one certificate per workload, written
 * as files a proxy can load (`<name>.crt` = leaf followed by its chain, `<name>.key`
 * 0600, `ca.crt` = the trust bundle). `issueWorkload` is the in-memory version of the
 * proxy's own flow (new key → CSR → CA signs), used by tests across the repo.
 */
import { join } from 'node:path';
import { CertificateAuthority, createRootCa } from './ca.js';
import { createCsr } from './csr.js';
import { PkiError } from './errors.js';
import { CA_CERT_FILE, CA_KEY_FILE, writePublicFile, writeSecretFile } from './files.js';
import { generateKeyPair } from './keys.js';
import { toSpiffeId, type SpiffeId } from './spiffe.js';

export interface WorkloadCert {
  readonly keyPem: string;
  readonly certPem: string;
  readonly chainPems: string[];
  readonly spiffeId: string;
  readonly notAfter: Date;
}

export function issueWorkload(ca: CertificateAuthority, id: SpiffeId | string, ttlMs?: number, now?: Date): WorkloadCert {
  const { privateKeyPem } = generateKeyPair();
  const csrPem = createCsr(privateKeyPem, id);
  const issued = ca.issue(csrPem, { identity: id, ...(ttlMs === undefined ? {} : { ttlMs }), ...(now === undefined ? {} : { now }) });
  return { keyPem: privateKeyPem, certPem: issued.certPem, chainPems: issued.chainPems, spiffeId: issued.spiffeId, notAfter: issued.notAfter };
}

export interface DevMeshWorkload {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** File name stem; defaults to `<serviceAccount>.<namespace>`. */
  readonly name?: string;
}

export interface DevMeshFiles {
  readonly caCertFile: string;
  readonly caKeyFile: string;
  readonly workloads: { readonly name: string; readonly certFile: string; readonly keyFile: string; readonly spiffeId: string }[];
}

const FILE_STEM = /^[A-Za-z0-9._-]+$/;

/** Writes `<name>.crt` (leaf + chain) and `<name>.key` (0600) for one workload. */
export async function writeWorkloadFiles(dir: string, name: string, w: WorkloadCert): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await writeSecretFile(keyFile, w.keyPem);
  await writePublicFile(certFile, [w.certPem, ...w.chainPems].join(''));
  return { certFile, keyFile };
}

export async function writeDevMesh(
  dir: string,
  opts: { trustDomain: string; workloads: readonly DevMeshWorkload[]; ttlMs?: number; now?: Date },
): Promise<DevMeshFiles> {
  const named = opts.workloads.map((w) => {
    const { uri, id } = toSpiffeId({ trustDomain: opts.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount });
    const name = w.name ?? `${id.serviceAccount}.${id.namespace}`;
    if (!FILE_STEM.test(name) || name === '.' || name === '..' || name === 'ca')
      throw new PkiError('INVALID_SPIFFE_ID', `workload name ${JSON.stringify(name)} is not a usable file name (letters, digits, ".", "-", "_"; not "ca")`);
    return { id, uri, name };
  });
  const dup = named.find((w, i) => named.findIndex((o) => o.name === w.name) !== i);
  if (dup) throw new PkiError('INVALID_SPIFFE_ID', `two workloads would both be written as ${dup.name}.crt`);

  const root = createRootCa({ trustDomain: opts.trustDomain, ...(opts.now ? { now: opts.now } : {}) });
  const ca = new CertificateAuthority({ ...root, trustDomain: opts.trustDomain });
  const caCertFile = join(dir, CA_CERT_FILE);
  const caKeyFile = join(dir, CA_KEY_FILE);
  await writeSecretFile(caKeyFile, root.keyPem);
  await writePublicFile(caCertFile, root.certPem);
  const workloads: DevMeshFiles['workloads'] = [];
  for (const w of named) {
    const cert = issueWorkload(ca, w.id, opts.ttlMs, opts.now);
    workloads.push({ name: w.name, ...(await writeWorkloadFiles(dir, w.name, cert)), spiffeId: w.uri });
  }
  return { caCertFile, caKeyFile, workloads };
}
