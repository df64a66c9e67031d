/**
 * Writing PKI material to disk. Private keys are created 0600 from the first byte: the
 * content goes to a fresh temporary file opened with O_EXCL and that mode, then is renamed
 * over the target, so a key is never readable by others, not even briefly, and a crash
 * leaves either the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CertificateAuthority } from './ca.js';
import { PkiError } from './errors.js';
import { parseSpiffeUri } from './spiffe.js';
import { readCert, splitPemCerts } from './x509.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';

/**
 * `dir` and the directories above it that are missing, mode 0700, one level at a time. Not
 * node's `mkdir(..., { recursive: true })`: under a directory that refuses new entries with
 * ENOENT (`/proc`) it never returns, retrying at 100 % CPU (`wren certs ca --out /proc/x`
 * hung that way). Here a parent that cannot be made fails with its own error.
 */
async function makeDirs(dir: string): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(dir)).isDirectory()) return;
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw e;
    await makeDirs(parent);
    // The parent is there now: a second ENOENT (a file system that takes no new entry) is the answer.
    await mkdir(dir, { mode: 0o700 }).catch((e2: NodeJS.ErrnoException) => {
      if (e2.code !== 'EEXIST') throw e2;
    });
  }
}

async function atomicWrite(path: string, data: string, mode: number): Promise<void> {
  await makeDirs(dirname(path));
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await chmod(tmp, mode); // the umask may have narrowed it; make the mode exact
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** A private key: mode 0600. */
export function writeSecretFile(path: string, data: string): Promise<void> {
  return atomicWrite(path, data, 0o600);
}

/** A certificate or bundle: mode 0644. */
export function writePublicFile(path: string, data: string): Promise<void> {
  return atomicWrite(path, data, 0o644);
}

/**
 * Loads the CA in `dir` (ca.crt: the issuing CA cert, then any intermediates above it;
 * ca.key). The trust domain comes from the CA's `spiffe://<td>` URI SAN unless given.
 */
export async function loadCaDir(dir: string, trustDomain?: string): Promise<CertificateAuthority> {
  const certText = await readFile(join(dir, CA_CERT_FILE), 'utf8');
  const keyPem = await readFile(join(dir, CA_KEY_FILE), 'utf8');
  const [certPem, ...chainPems] = splitPemCerts(certText);
  if (!certPem) throw new PkiError('CA_INVALID', `${join(dir, CA_CERT_FILE)} holds no PEM certificate`);
  let td = trustDomain;
  if (td === undefined) {
    const uri = (readCert(certPem).ext.san?.uris ?? []).find((u) => u.startsWith('spiffe://'));
    if (!uri) throw new PkiError('CA_INVALID', `${join(dir, CA_CERT_FILE)} names no trust domain (no spiffe:// URI SAN); pass the trust domain explicitly`);
    td = parseSpiffeUri(uri).trustDomain;
  }
  return new CertificateAuthority({ certPem, keyPem, chainPems, trustDomain: td });
}
