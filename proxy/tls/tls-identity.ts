import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { spiffeIdOf } from './peer-identity.js';

/**
 * The workload's TLS material: its key, certificate chain and trust bundle. Contexts are
 * built once per rotation and swapped atomically: new connections use the new context,
 * existing connections keep the one they were made with.
 */
export interface TlsMaterial {
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly certChainPem: string;
  /** One or more roots (two during trust-anchor rotation). */
  readonly trustBundlePem: string;
}

/** TLS 1.2 minimum with AEAD suites only; TLS 1.3 preferred (Node negotiates it first). */
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export class TlsIdentity {
  private ctx: SecureContext;
  private opts: SecureContextOptions;
  private listeners = new Set<() => void>();
  private current: TlsMaterial;
  private leafCert: X509Certificate;
  private id: string;
  private notAfter: number;

  constructor(material: TlsMaterial) {
    this.current = material;
    this.leafCert = new X509Certificate(material.certChainPem);
    this.id = spiffeIdOf(this.leafCert);
    this.notAfter = this.leafCert.validToDate.getTime();
    this.opts = TlsIdentity.options(material);
    this.ctx = createSecureContext(this.opts);
  }

  static fromFiles(files: { certFile: string; keyFile: string; trustBundleFile: string }): TlsIdentity {
    return new TlsIdentity({
      keyPem: readFileSync(files.keyFile, 'utf8'),
      certChainPem: readFileSync(files.certFile, 'utf8'),
      trustBundlePem: readFileSync(files.trustBundleFile, 'utf8'),
    });
  }

  static options(m: TlsMaterial): SecureContextOptions {
    return { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, minVersion: 'TLSv1.2', ciphers: CIPHERS, honorCipherOrder: true };
  }

  /** Swap in new material (rotation). Throws, keeping the old material, if it is unusable. */
  rotate(material: TlsMaterial): void {
    const opts = TlsIdentity.options(material);
    const ctx = createSecureContext(opts);
    this.leafCert = new X509Certificate(material.certChainPem);
    this.id = spiffeIdOf(this.leafCert);
    this.notAfter = this.leafCert.validToDate.getTime();
    this.current = material;
    this.opts = opts;
    this.ctx = ctx;
    for (const l of this.listeners) l();
  }

  onRotate(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get secureContext(): SecureContext {
    return this.ctx;
  }

  get contextOptions(): SecureContextOptions {
    return this.opts;
  }

  /** Our own SPIFFE ID, read from the leaf certificate. */
  get spiffeId(): string {
    return this.id;
  }

  /** The leaf's notAfter, epoch ms (read once per rotation: readiness asks on every probe). */
  get notAfterMs(): number {
    return this.notAfter;
  }

  leaf(): X509Certificate {
    return this.leafCert;
  }

  get material(): TlsMaterial {
    return this.current;
  }
}
