/**
 * `--sidecar-mode auto`: native sidecars (KEP-753: the proxy as an init container with
 * restartPolicy Always) where the API server is Kubernetes 1.29 or newer, where the
 * SidecarContainers feature is beta and on by default; classic sidecars before that, where
 * the API server refuses (1.27 and older: restartPolicy on an init container is invalid)
 * or drops (1.28 without the feature gate) the field. The same choice as Istio's
 * ENABLE_NATIVE_SIDECARS=auto-beta (istio/istio#49570) and Linkerd's advice for its
 * config.beta.linkerd.io/proxy-enable-native-sidecar (it "requires Kubernetes >= 1.29").
 *
 * The version is read from the API server's GET /version (client-node's VersionApi) when the
 * control plane starts and again every `intervalMs` (a cluster upgraded under a running
 * control plane gets native sidecars for its new pods without a restart). Each read is
 * bounded by `timeoutMs`. When no version has been read yet (the API server unreachable, an
 * answer without a usable version) auto injects classic sidecars, which every Kubernetes
 * version runs, logs a warning and counts the failure
 * (wren_cp_injector_version_errors_total); a failure after a successful read keeps the
 * version last read (warned and counted too): the cluster did not get older because one
 * request failed, and flipping the mode on a blip would give one Deployment's pods
 * different shapes. A pod's wren.io/sidecar-mode annotation still wins (inject-pod.ts).
 */
import * as k8s from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';

export type SidecarMode = 'native' | 'classic' | 'auto';
export const SIDECAR_MODES: readonly SidecarMode[] = ['native', 'classic', 'auto'];

/** The first Kubernetes version whose SidecarContainers feature is on by default (beta, 1.29; GA in 1.33). */
export const NATIVE_SIDECARS_SINCE = { major: 1, minor: 29 } as const;

export interface KubernetesVersion {
  readonly major?: string;
  readonly minor?: string;
  readonly gitVersion?: string;
}

/**
 * major.minor of a /version answer, or undefined when it carries none. Providers decorate
 * minor ("29+" on GKE and EKS); gitVersion ("v1.29.3-eks-…") is the fallback. `wren check`
 * reads the version with this too, so it and the injector never disagree on a cluster's
 * version; an answer that is not an object (null, a string) carries none.
 */
export function parseKubernetesVersion(v: unknown): { major: number; minor: number } | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { major: ma, minor: mi, gitVersion } = v as Record<string, unknown>;
  const major = typeof ma === 'string' || typeof ma === 'number' ? parseInt(String(ma), 10) : NaN;
  const minor = typeof mi === 'string' || typeof mi === 'number' ? parseInt(String(mi), 10) : NaN;
  if (Number.isFinite(major) && Number.isFinite(minor)) return { major, minor };
  const m = typeof gitVersion === 'string' ? /^v?(\d+)\.(\d+)/.exec(gitVersion) : null;
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/** Whether a Kubernetes version runs native sidecars by default (>= 1.29). */
export function runsNativeSidecars(v: { major: number; minor: number }): boolean {
  return v.major > NATIVE_SIDECARS_SINCE.major || (v.major === NATIVE_SIDECARS_SINCE.major && v.minor >= NATIVE_SIDECARS_SINCE.minor);
}

export interface AutoSidecarModeOptions {
  /**
   * GET /version of the API server (VersionApi.getCode; versionReader below), aborted by
   * `signal`: a read given up on (timeoutMs) or stopped must end its request, not leave it
   * open on an API server that accepted it and never answers.
   */
  readonly readVersion: (signal: AbortSignal) => Promise<KubernetesVersion>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry: Registry;
  /** How often the version is read again (default 5 min). */
  readonly intervalMs?: number;
  /** One read's longest wait (default 5 s). */
  readonly timeoutMs?: number;
}

export const AUTO_SIDECAR_MODE_INTERVAL_MS = 5 * 60_000;

/** The injector's mode under `auto`: `nativeSidecars` is read by every admission request. */
export class AutoSidecarMode {
  private version: { major: number; minor: number; gitVersion: string } | undefined;
  private timer: Timer | undefined;
  /** The read in flight, aborted by stop(). */
  private reading: AbortController | undefined;
  private stopped = false;
  private failing = false;
  private readonly errors: Counter<'reason'>;
  private readonly native: Gauge;
  private readonly log: Logger;

  constructor(private readonly o: AutoSidecarModeOptions) {
    this.log = o.logger.child({ component: 'injector' });
    this.errors = new Counter({
      name: 'wren_cp_injector_version_errors_total',
      help: 'Reads of the API server version (GET /version) for --sidecar-mode auto that failed: unreachable, timed out, or no usable version. Until one succeeds, auto injects classic sidecars',
      labelNames: ['reason'] as const,
      registers: [o.registry],
    });
    this.native = new Gauge({
      name: 'wren_cp_injector_native_sidecars',
      help: 'What --sidecar-mode auto injects now: 1 native sidecars (Kubernetes >= 1.29), 0 classic (older, or the version not read)',
      registers: [o.registry],
    });
    this.native.set(0);
  }

  /** Native sidecars for new pods now: the last version read is >= 1.29. */
  get nativeSidecars(): boolean {
    return this.version !== undefined && runsNativeSidecars(this.version);
  }

  /** The version last read (gitVersion), or undefined. */
  get kubernetesVersion(): string | undefined {
    return this.version?.gitVersion;
  }

  /** Reads the version once (awaited: the webhook starts knowing it, or knowing it could not), then every intervalMs. */
  async start(): Promise<void> {
    await this.refresh();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.reading?.abort(new Error('stopped'));
  }

  /** One read of /version; never throws. */
  async refresh(): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? 5000;
    let t: Timer | undefined;
    let v: KubernetesVersion;
    // Given up on after timeoutMs, the request is aborted too: Promise.race alone left it open
    // (client-node sets no timeout), one more socket on a hung API server every intervalMs.
    const reading = (this.reading = new AbortController());
    try {
      v = await Promise.race([
        this.o.readVersion(reading.signal),
        new Promise<never>((_, reject) => (t = this.o.clock.setTimeout(() => {
          const e = new Error(`no answer within ${timeoutMs} ms`);
          reading.abort(e);
          reject(e);
        }, timeoutMs))),
      ]);
    } catch (e) {
      // client-node's ApiException carries the status in `code` and a message of several lines (body, headers): one line here.
      const code = (e as { code?: unknown }).code;
      return this.failed('unreachable', typeof code === 'number' ? `HTTP ${code}` : String((e as Error).message).split('\n')[0]);
    } finally {
      if (t) this.o.clock.clearTimeout(t);
      if (this.reading === reading) this.reading = undefined;
    }
    const parsed = parseKubernetesVersion(v ?? {});
    if (!parsed) return this.failed('no-version', `the answer carries no version (${JSON.stringify(v).slice(0, 120)})`);
    const before = this.nativeSidecars;
    const first = this.version === undefined;
    this.version = { ...parsed, gitVersion: v.gitVersion ?? `v${parsed.major}.${parsed.minor}` };
    this.native.set(this.nativeSidecars ? 1 : 0);
    if (first || before !== this.nativeSidecars || this.failing)
      this.log.info(`--sidecar-mode auto: Kubernetes ${this.version.gitVersion}: injecting ${this.nativeSidecars ? 'native sidecars (>= 1.29)' : 'classic sidecars (native sidecars need 1.29)'}`, {
        kubernetesVersion: this.version.gitVersion, nativeSidecars: this.nativeSidecars,
      });
    this.failing = false;
  }

  private failed(reason: 'unreachable' | 'no-version', detail: string): void {
    this.errors.inc({ reason });
    // Once per failure streak: a down API server would otherwise log every period.
    if (!this.failing)
      this.log.warn(
        this.version === undefined
          ? `--sidecar-mode auto: cannot read the Kubernetes version (GET /version: ${detail}); injecting classic sidecars, which every version runs, until it can be read`
          : `--sidecar-mode auto: cannot read the Kubernetes version (GET /version: ${detail}); keeping the version last read (${this.version.gitVersion}: ${this.nativeSidecars ? 'native' : 'classic'} sidecars)`,
        { code: 'KUBERNETES_VERSION_UNKNOWN', reason, error: detail },
      );
    this.failing = true;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.o.clock.setTimeout(() => void this.refresh().then(() => this.schedule()), this.o.intervalMs ?? AUTO_SIDECAR_MODE_INTERVAL_MS);
    this.timer.unref?.();
  }
}

/**
 * GET /version through client-node's VersionApi, aborted by the signal: the request
 * context's signal, set by a middleware that runs after the KubeConfig's authentication is
 * applied. getCode's first argument is the (empty) request parameters, the options second.
 */
export function versionReader(kc: k8s.KubeConfig): (signal: AbortSignal) => Promise<KubernetesVersion> {
  const api = kc.makeApiClient(k8s.VersionApi);
  const abortWith = (signal: AbortSignal): k8s.ObservableMiddleware => ({
    pre: (ctx) => {
      ctx.setSignal(signal);
      return new k8s.Observable(Promise.resolve(ctx));
    },
    post: (res) => new k8s.Observable(Promise.resolve(res)),
  });
  return (signal) => api.getCode({}, { middleware: [abortWith(signal)], middlewareMergeStrategy: 'append' });
}
