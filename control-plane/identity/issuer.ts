import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateAuthority, createRootCa, PkiError, splitPemCerts } from '../../certs/index.js';

/**
 * The identity service's signing CA and the trust bundle it hands out.
 *
 * From a directory (`--ca-dir`), in either layout:
 *  - a kubernetes.io/tls Secret as cert-manager writes it, mounted at /var/run/wren/issuer:
 *    `tls.crt` (the issuing CA, optionally followed by intermediates), `tls.key`, and
 *    `ca.crt` (the trust anchor(s)). Like Linkerd's linkerd-identity-issuer Secret.
 *  - what `wren certs ca` writes: `ca.crt` + `ca.key`, a root that signs leaves itself.
 * `--trust-bundle FILE` replaces the anchors from the directory; it may hold several roots
 * (trust-anchor rotation: old and new root side by side, the issuer chaining to either).
 * The issuer must chain to one of the anchors, or loading fails: handing out leaves the
 * mesh cannot verify would break every new connection.
 *
 * Without a directory, `generateIssuer` makes a root in memory for the local demo: it
 * lives as long as the process, so restarting the control plane changes the mesh's
 * trust anchor (every proxy would need the new bundle).
 */
export interface Issuer {
  readonly ca: CertificateAuthority;
  /** Every trust anchor, PEM, concatenated. */
  readonly trustBundlePem: string;
  /** Where it came from, for logs: `dir:PATH` or `generated`. */
  readonly source: string;
  /**
   * Issuers that change at run time (issuer-reloader.ts): a consistent view of the CA and
   * bundle to use for one request, and a subscription to swaps. Absent: it never changes.
   */
  snapshot?(): Issuer;
  onChange?(fn: () => void): () => void;
}

/** The CA and bundle to use together for one operation (a swap in between must not mix them). */
export const issuerSnapshot = (i: Issuer): Issuer => i.snapshot?.() ?? i;

export const ISSUER_FILES = { tlsCert: 'tls.crt', tlsKey: 'tls.key', caCert: 'ca.crt', caKey: 'ca.key' } as const;

const selfSigned = (c: X509Certificate): boolean => c.checkIssued(c) && c.verify(c.publicKey);
const signedBy = (child: X509Certificate, parent: X509Certificate): boolean => child.checkIssued(parent) && child.verify(parent.publicKey);

async function read(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new PkiError('CA_INVALID', `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export async function loadIssuerDir(dir: string, opts: { trustDomain: string; trustBundleFile?: string }): Promise<Issuer> {
  const secretLayout = existsSync(join(dir, ISSUER_FILES.tlsCert));
  const certFile = join(dir, secretLayout ? ISSUER_FILES.tlsCert : ISSUER_FILES.caCert);
  const keyFile = join(dir, secretLayout ? ISSUER_FILES.tlsKey : ISSUER_FILES.caKey);
  if (!existsSync(certFile))
    throw new PkiError('CA_INVALID', `${dir} holds neither ${ISSUER_FILES.tlsCert}/${ISSUER_FILES.tlsKey} (a kubernetes.io/tls Secret) nor ${ISSUER_FILES.caCert}/${ISSUER_FILES.caKey} (wren certs ca)`);
  const [certPem, ...rest] = splitPemCerts(await read(certFile));
  if (!certPem) throw new PkiError('CA_INVALID', `${certFile} holds no PEM certificate`);
  const keyPem = await read(keyFile);
  // Roots belong in the bundle, not in the chain a leaf is sent with.
  const chainPems = rest.filter((p) => !selfSigned(new X509Certificate(p)));

  let bundleText: string;
  let bundleSource: string;
  if (opts.trustBundleFile) {
    bundleText = await read(opts.trustBundleFile);
    bundleSource = opts.trustBundleFile;
  } else if (secretLayout && existsSync(join(dir, ISSUER_FILES.caCert))) {
    bundleText = await read(join(dir, ISSUER_FILES.caCert));
    bundleSource = join(dir, ISSUER_FILES.caCert);
  } else if (selfSigned(new X509Certificate(certPem))) {
    bundleText = certPem;
    bundleSource = certFile;
  } else {
    throw new PkiError('CA_INVALID', `the issuer in ${certFile} is not a root and no trust anchors were given: add ${ISSUER_FILES.caCert} to ${dir} or pass --trust-bundle FILE`);
  }
  const anchors = splitPemCerts(bundleText);
  if (anchors.length === 0) throw new PkiError('CA_INVALID', `${bundleSource} holds no PEM certificate`);
  const ca = new CertificateAuthority({ certPem, keyPem, chainPems, trustDomain: opts.trustDomain });
  checkChainsToBundle(certPem, chainPems, anchors, `${certFile} (trust anchors from ${bundleSource})`);
  return { ca, trustBundlePem: anchors.join(''), source: `dir:${dir}` };
}

/** A fresh root in memory (the local demo). */
export function generateIssuer(trustDomain: string, now?: Date): Issuer {
  const root = createRootCa({ trustDomain, ...(now ? { now } : {}) });
  return { ca: new CertificateAuthority({ certPem: root.certPem, keyPem: root.keyPem, trustDomain }), trustBundlePem: root.certPem, source: 'generated' };
}

/** Throws unless issuer -> chain -> one of the anchors is a path of valid signatures (or the issuer is an anchor). */
export function checkChainsToBundle(issuerPem: string, chainPems: readonly string[], anchorPems: readonly string[], what: string): void {
  const anchors = anchorPems.map((p) => new X509Certificate(p));
  const pool = chainPems.map((p) => new X509Certificate(p));
  let cur = new X509Certificate(issuerPem);
  for (let hops = 0; hops <= pool.length; hops++) {
    if (anchors.some((a) => a.fingerprint256 === cur.fingerprint256 || signedBy(cur, a))) return;
    const next = pool.find((p) => signedBy(cur, p));
    if (!next) break;
    cur = next;
  }
  throw new PkiError('CA_INVALID', `the issuer ${what} does not chain to any trust anchor: proxies could not verify the certificates it signs`);
}
