import type { SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateKeyPair, type IssuedCert } from '../../certs/index.js';
import type { Clock, Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { WallDeadline } from '../../common/wall-deadline.js';
import { issuerSnapshot, type Issuer } from './issuer.js';

/**
 * Server credentials whose certificate can be replaced while the server runs. grpc-js
 * servers watch their credentials (ServerCredentials._addWatcher) and call
 * Http2SecureServer#setSecureContext on every update (server.js createHttp2Server), the
 * same mechanism its experimental certificate providers use: new connections get the
 * new certificate, open ones keep theirs.
 */
export class RotatingServerCredentials extends grpc.ServerCredentials {
  constructor(initial: SecureContextOptions) {
    // Every client is asked for its certificate, none is required: a proxy's first Certify
    // has none to show (it authenticates with a token). node:tls verifies a presented chain
    // against `ca` (the trust bundle) and records the verdict; the discovery server then
    // refuses streams without a verified one (control-plane/identity/peer-certificate.ts).
    super({ requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, initial);
  }

  update(options: SecureContextOptions): void {
    this.updateSecureContextOptions(options);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * The control plane's own TLS identity: a certificate its CA issues to
 * spiffe://<td>/ns/<namespace>/sa/wren-control-plane, renewed at 70% of its lifetime
 * (like the proxies' renewal; proxy/identity/renewal-schedule.ts). Proxies verify it
 * against their trust bundle and check that SPIFFE ID. The server asks them for their
 * workload certificate and verifies it against every anchor of the current bundle
 * (`ca`, updated on every issuer or bundle change, so during a trust-anchor rotation
 * certificates of the old and the new root both pass); it does not require one, since a
 * proxy's first Certify is how it gets one. The key is generated in memory once and never
 * written anywhere.
 */
export class ServingIdentity {
  readonly credentials: RotatingServerCredentials;
  private readonly keyPem = generateKeyPair().privateKeyPem;
  private current: IssuedCert;
  private timer: WallDeadline | null = null;
  private stopped = false;
  private unsubscribe: (() => void) | null = null;
  /** The CA certificate that signed `current`. */
  private issuedBy = '';
  /** The bundle client certificates are verified against now. */
  private verifiesWith = '';

  constructor(
    private readonly o: { issuer: Issuer; spiffeId: string; ttlMs: number; clock: Clock; random: Random; logger: Logger },
  ) {
    this.current = this.issue();
    this.credentials = new RotatingServerCredentials(this.contextOptions());
  }

  get spiffeId(): string {
    return this.o.spiffeId;
  }

  get certificate(): IssuedCert {
    return this.current;
  }

  private issue(): IssuedCert {
    const csr = createCsr(this.keyPem, this.o.spiffeId);
    const ca = issuerSnapshot(this.o.issuer).ca;
    const issued = ca.issue(csr, { identity: this.o.spiffeId, ttlMs: this.o.ttlMs, now: new Date(this.o.clock.wallNow()) });
    this.issuedBy = ca.certPem;
    return issued;
  }

  private contextOptions(): SecureContextOptions {
    this.verifiesWith = issuerSnapshot(this.o.issuer).trustBundlePem;
    return { key: this.keyPem, cert: [this.current.certPem, ...this.current.chainPems].join(''), ca: this.verifiesWith, minVersion: 'TLSv1.2' };
  }

  /**
   * Schedules renewals until stop(). When the issuer is swapped at run time (a reloaded
   * --ca-dir) the certificate is reissued at once, so new connections see one from the
   * new issuer; proxies verify it with the bundle they got from Certify, which already
   * holds the new root (docs/trust-anchor-rotation.md, step 3).
   */
  start(): void {
    this.unsubscribe ??= this.o.issuer.onChange?.(() => {
      if (this.stopped) return;
      const snap = issuerSnapshot(this.o.issuer);
      // Only a new issuing CA needs a new certificate; a bundle change alone needs the new
      // anchors to verify client certificates with (new connections only).
      if (snap.ca.certPem === this.issuedBy) {
        if (snap.trustBundlePem !== this.verifiesWith) this.credentials.update(this.contextOptions());
        return;
      }
      this.timer?.cancel();
      this.timer = null;
      this.renew();
    }) ?? null;
    this.schedule();
  }

  /**
   * The renewal is due by the monotonic or the wall clock, whichever comes first, the wall
   * clock looked at at least once a minute (common/wall-deadline.ts): the certificate expires
   * by the wall clock, and a single timer of the whole delay (~17 h of a 24 h certificate) ran
   * on the monotonic clock, which stops while the host is suspended. A control plane woken
   * after its serving certificate expired kept serving it, and every proxy's handshake to it
   * failed, for up to as many hours more (until 2026-12-08, adv66; the proxy's own renewal
   * was fixed the same way the day before).
   */
  private schedule(retry = false): void {
    if (this.stopped) return;
    const remaining = this.current.notAfter.getTime() - this.o.clock.wallNow();
    const delay = retry ? 5_000 : Math.max(250, remaining * (0.65 + 0.1 * this.o.random()));
    this.timer = new WallDeadline(this.o.clock, { delayMs: delay }, () => {
      this.timer = null;
      this.renew();
    });
  }

  private renew(): void {
    try {
      this.current = this.issue();
      this.credentials.update(this.contextOptions());
      this.o.logger.debug('control plane serving certificate renewed', { identity: this.o.spiffeId, serial: this.current.serial, notAfter: this.current.notAfter.toISOString() });
      this.schedule();
    } catch (e) {
      this.o.logger.error('cannot renew the control plane serving certificate; retrying in 5 s', { identity: this.o.spiffeId, error: e });
      this.schedule(true);
    }
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.timer?.cancel();
    this.timer = null;
  }
}
