import { X509Certificate, createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { createCsr, generateKeyPairAsync, splitPemCerts, verifyChain, writePublicFile } from '../../certs/index.js';
import { abortableSleep } from '../../common/abortable-sleep.js';
import type { Clock, Random } from '../../common/clock.js';
import { WallDeadline } from '../../common/wall-deadline.js';
import type { Logger } from '../../common/logger.js';
import { TlsIdentity, type TlsMaterial } from '../tls/tls-identity.js';
import type { CertifyFn } from './certify-client.js';
import { ProxyIdentityMetrics } from './identity-metrics.js';
import { DEFAULT_RENEWAL_POLICY, refreshDelay, retryDelay, type RenewalPolicy } from './renewal-schedule.js';

export interface WorkloadIdentityOptions {
  /** spiffe://<td>/ns/<ns>/sa/<sa> */
  readonly spiffeId: string;
  readonly certify: CertifyFn;
  /** Called before every Certify: projected service-account tokens rotate on disk. */
  readonly readToken: () => Promise<Buffer>;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Requested lifetime (0/undefined: the control plane's default). */
  readonly lifetimeMs?: number;
  /** Deadline of one Certify call (default 10 s). */
  readonly timeoutMs?: number;
  readonly policy?: Partial<RenewalPolicy>;
  /** A new private key (PEM) for each certificate; default RSA 2048 off the event loop. */
  readonly generateKey?: () => Promise<string>;
  /** Where to write the current chain and bundle (public material only), if anywhere. */
  readonly runDir?: string;
}

/** Files written under runDir: certificates only. The private key is never written. */
export const RUN_DIR_FILES = { chain: 'identity.crt', bundle: 'trust-bundle.crt' } as const;

export const tokenFromFile = (file: string) => (): Promise<Buffer> => readFile(file);

/** Which WorkloadIdentity keeps a TlsIdentity fresh (connectControlPlane finds it from the proxy's TlsIdentity). */
const managers = new WeakMap<TlsIdentity, WorkloadIdentity>();

/**
 * The longest server pushback (grpc-retry-pushback-ms, gRFC A6) a retry waits for: the control
 * plane's Certify rate limit sends when its next signature is free (at most a minute,
 * control-plane/identity/certify-limiter.ts); a larger value is taken as this.
 */
export const MAX_PUSHBACK_MS = 5 * 60_000;

/**
 * The delay the server asked for before another try (RESOURCE_EXHAUSTED with
 * grpc-retry-pushback-ms: its per-workload Certify limit), or 0. Retrying sooner is
 * refused again: the backoff waits at least this long.
 */
export function pushbackMs(e: unknown): number {
  const err = e as { code?: unknown; metadata?: { get?: (k: string) => unknown[] } };
  if (err?.code !== grpcStatus.RESOURCE_EXHAUSTED || typeof err.metadata?.get !== 'function') return 0;
  const v = Number(String(err.metadata.get('grpc-retry-pushback-ms')[0] ?? ''));
  return Number.isFinite(v) && v > 0 ? Math.min(v, MAX_PUSHBACK_MS) : 0;
}

/**
 * How far in the future a new certificate's notBefore may be and still be taken: it is then
 * held until notBefore and used from then. The CA backdates notBefore by a minute
 * (certs/ca.ts); a control plane whose clock runs further ahead than that signs certificates
 * that start after the proxy's now, and every one it signs on a retry does too, so refusing
 * them never got a certificate (Linkerd's proxy refuses them the same way, CertNotValidYet,
 * linkerd/linkerd2#6427; istiod backdates 2 minutes, istio/istio#32176). Peers judge
 * notBefore by their own clocks, so the certificate is not presented before it. Further
 * ahead than this the control plane's clock is taken as broken: refused, as before.
 */
export const MAX_NOT_YET_VALID_MS = 5 * 60_000;

/** The renewal timer looks at the wall clock at least this often (common/wall-deadline.ts: a suspend stops the timers' clock). */
export { WALL_CHECK_MS } from '../../common/wall-deadline.js';

/** Errors that retrying with the same configuration cannot fix. */
const PERMANENT = new Set<number>([grpcStatus.PERMISSION_DENIED, grpcStatus.INVALID_ARGUMENT, grpcStatus.FAILED_PRECONDITION]);

/**
 * The proxy's side of workload identity: a key made in memory, a CSR, the token read from
 * its file, Certify, and a TlsIdentity built from the answer. Afterwards it renews at
 * ~70% of the remaining lifetime (renewal-schedule.ts) with a fresh key each time and
 * swaps the material with TlsIdentity.rotate: new connections use the new certificate,
 * open ones keep theirs. On failure it retries with capped backoff, and keeps retrying
 * after expiry (logging an error) rather than give up on the mesh.
 */
export class WorkloadIdentity {
  private readonly policy: RenewalPolicy;
  private identity: TlsIdentity | null = null;
  private validUntilMs = 0;
  private attempt = 0;
  /** The scheduled renewal or retry (schedule()). */
  private timer: WallDeadline | null = null;
  private nextAtMs: number | null = null;
  /** A renewed or first certificate's wait for its notBefore (untilValid()). */
  private notBefore: WallDeadline | null = null;
  /** Until when (clock.now()) the control plane asked not to be called again (grpc-retry-pushback-ms of its last refusal). */
  private pushbackUntilMs = 0;
  private inflight: Promise<void> | null = null;
  private stopped = false;
  /** Aborted by stop(): ends the wait of a renewed certificate for its notBefore. */
  private halt = new AbortController();
  private metrics: ProxyIdentityMetrics | null = null;
  private readonly tallies = { success: 0, failure: 0 };

  constructor(private readonly o: WorkloadIdentityOptions) {
    this.policy = { ...DEFAULT_RENEWAL_POLICY, ...(o.policy ?? {}) };
  }

  /** The current TLS identity (after obtain()). */
  get tls(): TlsIdentity {
    if (!this.identity) throw new Error('no certificate yet: call obtain() first');
    return this.identity;
  }

  get validUntil(): number {
    return this.validUntilMs;
  }

  /** Epoch ms of the scheduled renewal or retry; null when none is scheduled. */
  get nextRenewalAt(): number | null {
    return this.nextAtMs;
  }

  /** Certify attempts so far, by result. */
  get counts(): { readonly success: number; readonly failure: number } {
    return { ...this.tallies };
  }

  /**
   * The first certificate, retried with backoff for up to `timeoutMs`. Fails at once on
   * errors that a retry cannot fix (wrong identity, malformed request, no authenticator).
   * `signal` stops it at once (a SIGTERM during startup): the Certify call in flight is
   * cancelled, no retry is scheduled, and it rejects with the signal's reason.
   */
  async obtain(timeoutMs: number, signal?: AbortSignal): Promise<TlsIdentity> {
    const deadline = this.o.clock.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        const got = await this.fetch(signal);
        await this.untilValid(got, signal);
        this.identity = new TlsIdentity(got.material);
        managers.set(this.identity, this);
        this.accept(got.validUntilMs, got.serial, 'certificate obtained');
        return this.identity;
      } catch (e) {
        signal?.throwIfAborted();
        this.failed();
        const delay = Math.max(retryDelay(attempt, 0, this.o.random, this.policy), pushbackMs(e));
        const code = (e as { code?: unknown }).code;
        if ((typeof code === 'number' && PERMANENT.has(code)) || this.o.clock.now() + delay > deadline)
          throw new Error(`cannot obtain a certificate for ${this.o.spiffeId} from the control plane (${attempt + 1} attempt(s)): ${describe(e)}`, { cause: e });
        this.o.logger.warn('certify failed; retrying', { identity: this.o.spiffeId, error: describe(e), retryInMs: Math.round(delay) });
        await abortableSleep(this.o.clock, delay, signal);
      }
    }
  }

  /** The WorkloadIdentity that obtained and renews `tls`, if one did. */
  static managing(tls: TlsIdentity): WorkloadIdentity | null {
    return managers.get(tls) ?? null;
  }

  /**
   * Renew within `delayMs` instead of at the scheduled time (the control plane's trust
   * state changed: proxy/identity/trust-sync.ts). A renewal already running, or one
   * scheduled sooner, is kept; nor is a retry brought before the end of the control plane's
   * pushback (its Certify limit refused the last try: a sooner one is refused again). No-op
   * before start() or after stop().
   */
  renewSoon(delayMs: number, reason: string): void {
    if (this.stopped || !this.identity || this.inflight || !this.timer) return;
    const now = this.o.clock.now();
    const delay = Math.max(0, delayMs, this.pushbackUntilMs - now);
    const at = now + delay;
    if (this.nextAtMs !== null && this.nextAtMs <= at) return;
    this.o.logger.info('renewing the certificate early', { identity: this.o.spiffeId, reason, inMs: Math.round(delay) });
    this.timer.cancel();
    this.timer = null;
    this.schedule(delay);
  }

  /** Starts the renewal loop (after obtain()). */
  start(): void {
    if (!this.identity) throw new Error('obtain() the first certificate before start()');
    this.stopped = false;
    if (this.halt.signal.aborted) this.halt = new AbortController();
    this.schedule(refreshDelay(this.o.clock.wallNow(), this.validUntilMs, this.o.random, this.policy));
  }

  stop(): void {
    this.stopped = true;
    this.halt.abort(new Error('stopped'));
    this.timer?.cancel();
    this.timer = null;
    this.nextAtMs = null;
  }

  /** Resolves when no renewal is running (tests drive the loop with a FakeClock and await this). */
  async settled(): Promise<void> {
    while (this.inflight) await this.inflight;
  }

  /** Registers the expiry and renewal metrics on the proxy's registry (once), with the counts so far. */
  attachMetrics(registry: Registry): void {
    if (this.metrics) return;
    const m = new ProxyIdentityMetrics(registry);
    if (this.tallies.success) m.renewals.inc({ result: 'success' }, this.tallies.success);
    if (this.tallies.failure) m.renewals.inc({ result: 'failure' }, this.tallies.failure);
    if (this.validUntilMs) m.expiry.set(this.validUntilMs / 1000);
    const due = this.timer ?? this.notBefore;
    if (this.nextAtMs !== null && due) m.nextRenewal.set(due.dueWallMs / 1000);
    this.metrics = m;
  }

  /**
   * The renewal is due when either clock says so (common/wall-deadline.ts): the monotonic one
   * (timers run on it, and a wall clock stepped back must not postpone it) or the wall clock
   * (certificates expire by it), looked at at least once a minute. During a suspend
   * CLOCK_MONOTONIC stops and the wall clock is set right on resume, so a single timer of the
   * whole delay fired hours after the certificate had expired (istio/ztunnel#1481).
   */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.nextAtMs = this.o.clock.now() + delayMs;
    this.timer = new WallDeadline(this.o.clock, { delayMs }, () => {
      this.timer = null;
      if (this.stopped) return;
      this.inflight = this.renew().finally(() => (this.inflight = null));
    });
    this.metrics?.nextRenewal.set(this.timer.dueWallMs / 1000);
  }

  private async renew(): Promise<void> {
    try {
      const got = await this.fetch();
      if (this.stopped) return;
      await this.untilValid(got, this.halt.signal);
      if (this.stopped) return;
      this.tls.rotate(got.material);
      this.attempt = 0;
      this.accept(got.validUntilMs, got.serial, 'certificate renewed');
      this.schedule(refreshDelay(this.o.clock.wallNow(), this.validUntilMs, this.o.random, this.policy));
    } catch (e) {
      if (this.stopped) return;
      this.failed();
      const remaining = this.validUntilMs - this.o.clock.wallNow();
      // Not sooner than the control plane's pushback (its Certify limit): that try would be refused too.
      const pushback = pushbackMs(e);
      if (pushback > 0) this.pushbackUntilMs = this.o.clock.now() + pushback;
      const delay = Math.max(retryDelay(this.attempt++, remaining, this.o.random, this.policy), pushback);
      const fields = { identity: this.o.spiffeId, error: describe(e), attempt: this.attempt, retryInMs: Math.round(delay), validForMs: Math.round(remaining) };
      if (remaining > 0) this.o.logger.warn('certificate renewal failed; retrying', fields);
      else this.o.logger.error('certificate expired and renewal keeps failing: new mTLS connections will fail', { ...fields, code: 'CERT_EXPIRED' });
      this.schedule(delay);
    }
  }

  /**
   * Waits until `got` is valid by this proxy's clock (its notBefore within
   * MAX_NOT_YET_VALID_MS: fetch() refused anything further). Meanwhile the certificate in
   * use keeps serving, and nextRenewalAt says when the new one will be installed. Due by
   * either clock, as a renewal is (schedule()): a suspend during the wait does not hold the
   * certificate back for the wait's running time after waking. Rejects with `signal`'s
   * reason as soon as it aborts, the timer cancelled.
   */
  private async untilValid(got: { validFromMs: number; serial: string }, signal: AbortSignal | undefined): Promise<void> {
    const early = got.validFromMs - this.o.clock.wallNow();
    if (early <= 0) return;
    // Aborted while the answer was on its way: the 'abort' event has passed, so the wait below would never hear it.
    signal?.throwIfAborted();
    this.o.logger.warn('the control plane\'s clock is ahead of this one: the new certificate is valid only from its notBefore, and is used from then', {
      code: 'CERT_NOT_YET_VALID', identity: this.o.spiffeId, serial: got.serial, notBefore: new Date(got.validFromMs).toISOString(), inMs: Math.round(early),
    });
    this.nextAtMs = this.o.clock.now() + early;
    this.metrics?.nextRenewal.set(got.validFromMs / 1000);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        wait.cancel();
        if (this.notBefore === wait) this.notBefore = null;
        reject(signal!.reason);
      };
      // Kept alive: a sidecar's start awaits its first certificate here.
      const wait = new WallDeadline(this.o.clock, { delayMs: early, dueWallMs: got.validFromMs, keepAlive: true }, () => {
        if (this.notBefore === wait) this.notBefore = null;
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      this.notBefore = wait;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private accept(validUntilMs: number, serial: string, msg: string): void {
    this.validUntilMs = validUntilMs;
    this.tallies.success++;
    this.metrics?.renewals.inc({ result: 'success' });
    this.metrics?.expiry.set(validUntilMs / 1000);
    this.o.logger.info(msg, { identity: this.o.spiffeId, serial, notAfter: new Date(validUntilMs).toISOString() });
    if (this.o.runDir) void this.writeRunDir(this.identity!.material);
  }

  private failed(): void {
    this.tallies.failure++;
    this.metrics?.renewals.inc({ result: 'failure' });
  }

  /** Key -> CSR -> Certify -> checked material. Throws on any problem, changing nothing. */
  private async fetch(signal?: AbortSignal): Promise<{ material: TlsMaterial; validUntilMs: number; validFromMs: number; serial: string }> {
    const keyPem = await (this.o.generateKey ?? (async () => (await generateKeyPairAsync()).privateKeyPem))();
    signal?.throwIfAborted();
    const csrPem = createCsr(keyPem, this.o.spiffeId);
    let token: Buffer;
    try {
      token = await this.o.readToken();
    } catch (e) {
      throw new Error(`cannot read the identity token: ${(e as Error).message}`, { cause: e });
    }
    const res = await this.o.certify({ identity: this.o.spiffeId, token, csrPem, requestedLifetimeMs: this.o.lifetimeMs ?? 0 }, this.o.timeoutMs ?? 10_000, signal);
    const [leafPem, ...chain] = splitPemCerts(res.certChainPem ?? '');
    if (!leafPem) throw new Error('the control plane returned no certificate');
    const bundle = splitPemCerts(res.trustBundlePem ?? '');
    const leaf = new X509Certificate(leafPem);
    const now = this.o.clock.wallNow();
    const validFromMs = leaf.validFromDate.getTime();
    // Checked as of its notBefore when that is a little ahead (MAX_NOT_YET_VALID_MS): the caller waits for it.
    const at = validFromMs > now && validFromMs - now <= MAX_NOT_YET_VALID_MS ? validFromMs : now;
    const v = verifyChain(leafPem, chain, bundle, new Date(at));
    if (!v.ok) throw new Error(`the certificate from the control plane does not verify against its trust bundle: ${v.reason}${validFromMs > now ? ` (it starts ${Math.round((validFromMs - now) / 1000)} s after this proxy's clock: is the control plane's clock ahead?)` : ''}`);
    if (v.spiffeId !== this.o.spiffeId) throw new Error(`the control plane certified ${v.spiffeId}, not ${this.o.spiffeId}`);
    const ours = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    if (!ours.equals(leaf.publicKey.export({ type: 'spki', format: 'der' }))) throw new Error('the certificate from the control plane is not for our key');
    return {
      material: { keyPem, certChainPem: [leafPem, ...chain].join(''), trustBundlePem: bundle.join('') },
      validUntilMs: new Date(leaf.validTo).getTime(),
      validFromMs,
      serial: leaf.serialNumber.toLowerCase(),
    };
  }

  private async writeRunDir(m: TlsMaterial): Promise<void> {
    try {
      await writePublicFile(join(this.o.runDir!, RUN_DIR_FILES.chain), m.certChainPem);
      await writePublicFile(join(this.o.runDir!, RUN_DIR_FILES.bundle), m.trustBundlePem);
    } catch (e) {
      this.o.logger.warn('cannot write the certificate to the run directory', { runDir: this.o.runDir, error: e });
    }
  }
}

function describe(e: unknown): string {
  const err = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof err?.code === 'number' && typeof err.details === 'string') return `gRPC ${err.code}: ${err.details}`;
  return String(err?.message ?? e);
}
