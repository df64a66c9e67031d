import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { bundleFingerprints, certFingerprint, short } from '../../contract/trust-anchors.js';
import { ISSUER_FILES, loadIssuerDir, type Issuer } from './issuer.js';

export interface ReloadingIssuerOptions {
  /** --ca-dir: tls.crt/tls.key[/ca.crt] (a kubernetes.io/tls Secret) or ca.crt/ca.key. */
  readonly dir: string;
  readonly trustDomain: string;
  /** --trust-bundle: the anchors handed out (the wren-trust-bundle ConfigMap), replacing ca.crt of `dir`. */
  readonly trustBundleFile?: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often the files are compared with what is loaded (default 10 s; kubelet refreshes mounted Secrets and ConfigMaps every ~60 s). */
  readonly intervalMs?: number;
}

export const DEFAULT_ISSUER_RELOAD_MS = 10_000;

/**
 * An Issuer whose files (--ca-dir, --trust-bundle) are re-read while the control plane
 * runs, so trust-anchor rotation (docs/trust-anchor-rotation.md) needs no restart.
 *
 * Like the injector webhook's certificate (injector/webhook-listener.ts), the files are
 * polled and compared with what was last read: kubelet swaps a mounted Secret or
 * ConfigMap atomically (its `..data` symlink), so a change is seen whole. A changed set of
 * files is loaded with the same checks as at start (loadIssuerDir: the key matches the
 * certificate, the issuer chains to one of the anchors) plus "the issuer is valid now";
 * anything else is logged and the previous issuer stays (a half-edited directory —
 * tls.crt written, tls.key not yet — is retried when the files change again).
 *
 * Every consumer reads `snapshot()` per operation, so a Certify never mixes the old CA
 * with the new bundle; `onChange` listeners (serving certificate, metrics, the discovery
 * push of the trust state) run after a swap.
 */
export class ReloadingIssuer implements Issuer {
  private timer: Timer | null = null;
  private stopped = true;
  private badSignature: string | null = null;
  private running: Promise<boolean> = Promise.resolve(false);
  private readonly listeners = new Set<() => void>();
  private gen = 1;

  private constructor(
    private readonly o: ReloadingIssuerOptions,
    private current: Issuer,
    private signature: string,
  ) {}

  /** Loads the files (throws PkiError like loadIssuerDir when they are unusable). Call start() to watch them. */
  static async load(o: ReloadingIssuerOptions): Promise<ReloadingIssuer> {
    const signature = await filesSignature(o);
    const issuer = await loadIssuerDir(o.dir, { trustDomain: o.trustDomain, ...(o.trustBundleFile ? { trustBundleFile: o.trustBundleFile } : {}) });
    return new ReloadingIssuer(o, issuer, signature);
  }

  get ca(): Issuer['ca'] {
    return this.current.ca;
  }

  get trustBundlePem(): string {
    return this.current.trustBundlePem;
  }

  get source(): string {
    return this.current.source;
  }

  /** 1 for the issuer loaded at start, +1 per swap. */
  get generation(): number {
    return this.gen;
  }

  snapshot(): Issuer {
    return this.current;
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Compares the files with what is loaded now; resolves true when a new issuer or bundle was installed. Serialized. */
  reload(): Promise<boolean> {
    const run = this.running.catch(() => false).then(() => this.reloadOnce());
    this.running = run;
    return run;
  }

  private tick(): void {
    if (this.stopped) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.reload().then(
        () => this.tick(),
        (e: unknown) => {
          this.o.logger.error('reloading the identity issuer failed', { error: e });
          this.tick();
        },
      );
    }, this.o.intervalMs ?? DEFAULT_ISSUER_RELOAD_MS);
    this.timer.unref?.();
  }

  private async reloadOnce(): Promise<boolean> {
    const signature = await filesSignature(this.o);
    if (signature === this.signature || signature === this.badSignature) return false;
    let next: Issuer;
    try {
      next = await loadIssuerDir(this.o.dir, { trustDomain: this.o.trustDomain, ...(this.o.trustBundleFile ? { trustBundleFile: this.o.trustBundleFile } : {}) });
      const now = this.o.clock.wallNow();
      if (now < next.ca.notBefore.getTime() || now > next.ca.notAfter.getTime())
        throw new Error(`the issuer is not valid now (valid ${next.ca.notBefore.toISOString()} to ${next.ca.notAfter.toISOString()})`);
    } catch (e) {
      this.badSignature = signature;
      this.o.logger.warn('the changed issuer or trust bundle files are not usable; keeping the previous ones', {
        code: 'ISSUER_RELOAD_REJECTED', dir: this.o.dir, trustBundle: this.o.trustBundleFile ?? join(this.o.dir, ISSUER_FILES.caCert), error: (e as Error).message,
      });
      return false;
    }
    this.signature = signature;
    this.badSignature = null;
    const prev = this.current;
    if (prev.ca.certPem === next.ca.certPem && prev.trustBundlePem === next.trustBundlePem && sameChain(prev, next)) return false;
    this.current = next;
    this.gen++;
    const before = new Set(bundleFingerprints(prev.trustBundlePem));
    const after = bundleFingerprints(next.trustBundlePem);
    this.o.logger.info('identity issuer reloaded', {
      generation: this.gen,
      issuer: { fingerprint: short(certFingerprint(next.ca.certPem)), changed: prev.ca.certPem !== next.ca.certPem, notAfter: next.ca.notAfter.toISOString() },
      trustAnchors: after.map(short),
      added: after.filter((f) => !before.has(f)).map(short),
      removed: [...before].filter((f) => !after.includes(f)).map(short),
    });
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (e) {
        this.o.logger.error('an issuer change listener failed', { error: e });
      }
    }
    return true;
  }
}

const sameChain = (a: Issuer, b: Issuer): boolean => a.ca.issuedChainPems.join('') === b.ca.issuedChainPems.join('');

/** A digest of every file the issuer may come from (a missing one counts as empty): any edit changes it. No key bytes are kept. */
async function filesSignature(o: ReloadingIssuerOptions): Promise<string> {
  const files = [ISSUER_FILES.tlsCert, ISSUER_FILES.tlsKey, ISSUER_FILES.caCert, ISSUER_FILES.caKey].map((f) => join(o.dir, f));
  if (o.trustBundleFile) files.push(o.trustBundleFile);
  const texts = await Promise.all(files.map((f) => readFile(f).catch(() => Buffer.alloc(0))));
  const h = createHash('sha256');
  texts.forEach((t, i) => h.update(`${files[i]}\0${t.length}\0`).update(t));
  return h.digest('hex');
}
