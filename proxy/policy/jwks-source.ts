import { readFile } from 'node:fs/promises';
import type { JWTVerifyGetKey } from 'jose';
import { loadJose } from './jose-module.js';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { parseJwksText } from '../../contract/parse.js';
import type { JwtRule } from '../../contract/model.js';
import { uriShown } from '../../contract/jwks-uri-shown.js';

/**
 * The public keys of one JWT issuer: inline (static), a file, or a URL. Remote and file
 * sets are loaded when first needed, refreshed every `refreshMs` and re-read early, at
 * most once per `minRefetchIntervalMs`, when a token names a key id the set does not
 * have (the issuer rotated its keys). A failed load keeps the last good keys (Envoy's
 * remote_jwks keeps serving its cached set too) and is retried after `retryMs`.
 *
 * Defaults (proxy config `requestAuthn`): Envoy's remote_jwks `cache_duration` is 5 min; jose's createRemoteJWKSet
 * refetches on an unknown kid at most once per 30 s (`cooldownDuration`); Istio's JWKS
 * fetch timeout is 5 s.
 */
export interface JwksSettings {
  readonly refreshMs: number;
  readonly retryMs: number;
  readonly fetchTimeoutMs: number;
  readonly minRefetchIntervalMs: number;
  /** A fetched JWKS larger than this is refused (counted `too-large`); default JWKS_MAX_BYTES. */
  readonly maxBytes?: number;
}

/**
 * A JWKS is a few kilobytes; Envoy bounds a remote_jwks body by its buffer limit (1 MiB by
 * default). Without a bound, a hostile or broken URL answering an endless body is buffered
 * by every sidecar of the workload until the fetch timeout.
 */
export const JWKS_MAX_BYTES = 1 << 20;

class JwksTooLarge extends Error {}
/** requestAuthn.jwksFetchTimeoutMs fired: an `error` fetch, and counted apart (JwksDeps.onTimeout), as every timeout is. */
class JwksTimeout extends Error {}

export type JwksFetchOutcome = 'ok' | 'error' | 'too-large' | 'rate-limited';

// fetch rejects with the abort reason, or (mid-body, some versions) an error caused by it.
const causedBy = (e: unknown, k: typeof JwksTooLarge | typeof JwksTimeout): boolean => e instanceof k || (e instanceof Error && e.cause instanceof k);

export interface JwksDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly settings: JwksSettings;
  /** wren_jwks_fetches_total{source, outcome}. */
  readonly onFetch: (source: string, outcome: JwksFetchOutcome) => void;
  /** A fetch gave up at settings.fetchTimeoutMs (also an `error` fetch): wren_limit_exceeded_total{limit="jwks-fetch-timeout"}. */
  readonly onTimeout?: (source: string) => void;
}

type Loader = () => Promise<string>;
type JwksJson = Parameters<typeof import('jose').createLocalJWKSet>[0];

export class JwksSource {
  private keys: JWTVerifyGetKey | null = null;
  /** An inline set, parsed at compile time; its key set is built on first use (jose loads lazily: jose-module.ts). */
  private inline: JwksJson | null = null;
  private inflight: Promise<void> | null = null;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private timer: Timer | null = null;
  private stopped = false;

  constructor(
    /** `uri:URL`, `file:PATH` or `inline`: shown in logs and the metric's `source` label. */
    readonly id: string,
    private readonly load: Loader | null,
    private readonly d: JwksDeps,
    inline?: string,
  ) {
    if (inline !== undefined) this.inline = JSON.parse(inline) as JwksJson;
  }

  /** True when the set can change (a URL or a file): an unknown kid may be worth a refetch. */
  get refreshable(): boolean {
    return this.load !== null;
  }

  /** The keys, loading them first if none were ever loaded (then null if that failed). */
  async current(): Promise<JWTVerifyGetKey | null> {
    if (this.inline !== null) {
      this.keys = (await loadJose()).createLocalJWKSet(this.inline);
      this.inline = null;
    }
    if (this.keys === null && this.load !== null) await this.refresh();
    return this.keys;
  }

  /**
   * An unknown kid: refetch now unless the last attempt was less than
   * minRefetchIntervalMs ago (a stream of tokens with made-up kids must not turn the
   * proxy into a load generator against the issuer). True when it did refetch.
   */
  async refetchForUnknownKid(): Promise<boolean> {
    if (this.load === null) return false;
    if (this.d.clock.now() - this.lastAttemptAt < this.d.settings.minRefetchIntervalMs) {
      this.d.onFetch(this.id, 'rate-limited');
      return false;
    }
    await this.refresh();
    return true;
  }

  /** Load now (joining a load already in flight); failures keep the last good keys. */
  refresh(): Promise<void> {
    if (this.load === null || this.stopped) return Promise.resolve();
    this.inflight ??= this.doRefresh().finally(() => (this.inflight = null));
    return this.inflight;
  }

  private async doRefresh(): Promise<void> {
    const load = this.load as Loader;
    this.lastAttemptAt = this.d.clock.now();
    let ok = false;
    try {
      const text = await load();
      const checked = parseJwksText(text, 'jwks');
      const { createLocalJWKSet } = await loadJose();
      this.keys = createLocalJWKSet(JSON.parse(checked) as JwksJson);
      ok = true;
      this.d.onFetch(this.id, 'ok');
    } catch (e) {
      this.d.onFetch(this.id, causedBy(e, JwksTooLarge) ? 'too-large' : 'error');
      if (causedBy(e, JwksTimeout)) this.d.onTimeout?.(this.id);
      this.d.logger.warn('JWKS load failed; keeping the last good keys', { source: this.id, hasKeys: this.keys !== null, error: (e as Error).message });
    }
    this.schedule(ok ? this.d.settings.refreshMs : this.d.settings.retryMs);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) this.d.clock.clearTimeout(this.timer);
    this.timer = this.d.clock.setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, ms);
    this.timer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.d.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}

/** GET a JWKS over plain HTTP(S) with a deadline (the proxy's own client, not the mesh: see docs/request-authentication.md). */
function httpLoader(url: string, d: JwksDeps): Loader {
  const load = fetchLoader(url, d);
  // An error that quotes the URL (fetch's do) is logged with it as uriShown shows it.
  return () =>
    load().catch((e: unknown) => {
      if (e instanceof Error && e.message.includes(url)) e.message = e.message.split(url).join(uriShown(url));
      throw e;
    });
}

function fetchLoader(url: string, d: JwksDeps): Loader {
  return async () => {
    const ac = new AbortController();
    const t = d.clock.setTimeout(() => ac.abort(new JwksTimeout(`timed out after ${d.settings.fetchTimeoutMs} ms`)), d.settings.fetchTimeoutMs);
    try {
      const res = await fetch(url, { signal: ac.signal, headers: { accept: 'application/json, application/jwk-set+json' }, redirect: 'error' });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const max = d.settings.maxBytes ?? JWKS_MAX_BYTES;
      const declared = Number(res.headers.get('content-length') ?? '0');
      if (declared > max) {
        await res.body?.cancel();
        throw new JwksTooLarge(`JWKS of ${declared} bytes is over the ${max}-byte limit`);
      }
      // Read with a running count: a body without (or lying about) its length stops at the limit.
      const chunks: Uint8Array[] = [];
      let n = 0;
      if (res.body) {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          n += chunk.byteLength;
          if (n > max) {
            ac.abort(new JwksTooLarge('over the limit'));
            throw new JwksTooLarge(`JWKS over the ${max}-byte limit`);
          }
          chunks.push(chunk);
        }
      }
      return Buffer.concat(chunks).toString('utf8');
    } finally {
      d.clock.clearTimeout(t);
    }
  };
}

/**
 * The key sources of the current policy, shared across policy updates by what they read
 * (a push that keeps the same jwksUri keeps its cached keys and its refresh schedule).
 */
export class JwksRegistry {
  private readonly sources = new Map<string, JwksSource>();

  constructor(private readonly d: JwksDeps) {}

  private static key(r: JwtRule): string {
    return r.jwksUri ? `uri:${r.jwksUri}` : r.jwksFile ? `file:${r.jwksFile}` : `inline:${r.jwks}`;
  }

  sourceFor(r: JwtRule): JwksSource {
    const key = JwksRegistry.key(r);
    let s = this.sources.get(key);
    if (!s) {
      if (r.jwksUri) s = new JwksSource(`uri:${uriShown(r.jwksUri)}`, httpLoader(r.jwksUri, this.d), this.d);
      else if (r.jwksFile) s = new JwksSource(`file:${r.jwksFile}`, () => readFile(r.jwksFile, 'utf8'), this.d);
      else s = new JwksSource('inline', null, this.d, r.jwks);
      this.sources.set(key, s);
    }
    return s;
  }

  /** Stop and forget the sources no rule of `rules` uses any more. */
  retainOnly(rules: readonly JwtRule[]): void {
    const keep = new Set(rules.map((r) => JwksRegistry.key(r)));
    for (const [k, s] of this.sources)
      if (!keep.has(k)) {
        s.stop();
        this.sources.delete(k);
      }
  }

  close(): void {
    this.retainOnly([]);
  }
}
