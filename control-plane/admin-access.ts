import { isIP } from 'node:net';
import type { Clock } from '../common/clock.js';
import { ADMIN_TOKEN_AUDIENCE, ADMIN_TOKEN_HEADER } from '../contract/identity.js';
import { AuthError, type AuthLimit, type Authenticator } from './identity/authenticator.js';


/** Open to any address: the kubelet's probes and Prometheus scrape the pod IP. */
const OPEN_PATHS: ReadonlySet<string> = new Set(['/live', '/ready', '/metrics']);
const CACHE_TTL_MS = 60_000;
const CACHE_MAX = 256;

/**
 * Who may read the control plane's debug pages, dashboard and /api/ (everything on the admin
 * port but /live, /ready and /metrics): they map every Service, endpoint, pod IP and policy
 * of the mesh and who was denied what, so, as istiod does for its 15014 debug endpoints
 * (ENABLE_DEBUG_ENDPOINT_AUTH, on by default), they answer only
 *  - a loopback client: `kubectl port-forward` and the local demo, or
 *  - a request carrying, in `x-wren-admin-token`, a Kubernetes ServiceAccount token for the
 *    audience `wren-admin` of a ServiceAccount in the control plane's own namespace (checked
 *    with a TokenReview): minting one needs `create serviceaccounts/token` there, which is
 *    an administrator's right. The CLI's `--kubernetes` mode mints one for `wren-cli`.
 * A custom header, not `Authorization`: the API server's pod proxy (the CLI's way in)
 * removes the `Authorization` it authenticated the CLI with before forwarding.
 */
export class AdminAccess {
  /** token → when its positive review expires; bounded (oldest dropped first). */
  private readonly granted = new Map<string, number>();

  constructor(
    private readonly o: {
      readonly namespace: string;
      readonly authenticator: Authenticator | null;
      readonly clock: Clock;
      /** Counts checks a TokenReview limit gave up (token-review-authenticator.ts): every limit counts when it fires. */
      readonly limited?: { inc(labels: { limit: AuthLimit }): void };
      /**
       * Counts grants dropped from the full cache before their minute was up
       * (wren_cp_admin_token_cache_evictions_total): each costs a TokenReview on the token's next
       * request, so a steady rate says more than CACHE_MAX distinct tokens are in use a minute.
       */
      readonly evicted?: { inc(): void };
    },
  ) {}

  /** Resolves null when the request may be served, else the reason for a 403. Never rejects. */
  async refusal(path: string, remoteAddress: string | undefined, headers: Record<string, string | string[] | undefined>): Promise<string | null> {
    if (OPEN_PATHS.has(path) || isLoopback(remoteAddress)) return null;
    const raw = headers[ADMIN_TOKEN_HEADER];
    const token = typeof raw === 'string' ? raw.trim() : '';
    const how = `only from localhost (kubectl port-forward) or with a ServiceAccount token of namespace ${this.o.namespace} for audience '${ADMIN_TOKEN_AUDIENCE}' in the ${ADMIN_TOKEN_HEADER} header (what \`wren ... --kubernetes\` sends)`;
    if (!token) return `${path} answers ${how}`;
    if (!this.o.authenticator) return `${path} answers only from localhost: this control plane has no Kubernetes API to check tokens with`;
    const now = this.o.clock.now();
    const until = this.granted.get(token);
    if (until !== undefined && until > now) return null;
    this.granted.delete(token);
    try {
      const p = await this.o.authenticator.authenticate(Buffer.from(token, 'utf8'));
      if (p.namespace !== this.o.namespace) return `the token is of ServiceAccount ${p.namespace}/${p.serviceAccount}; ${path} answers ${how}`;
    } catch (e) {
      if (e instanceof AuthError && e.limit) this.o.limited?.inc({ limit: e.limit });
      return `the token was refused (${(e as Error).message}); ${path} answers ${how}`;
    }
    this.makeRoom(now);
    this.granted.set(token, now + CACHE_TTL_MS);
    return null;
  }

  /**
   * Every grant lasts CACHE_TTL_MS from its insertion, so the map's order is expiry order:
   * expired grants at the front go first, uncounted; only when CACHE_MAX live ones remain is
   * the oldest dropped, and counted.
   */
  private makeRoom(now: number): void {
    for (const [t, until] of this.granted) {
      if (this.granted.size < CACHE_MAX) return;
      if (until > now) break;
      this.granted.delete(t);
    }
    if (this.granted.size < CACHE_MAX) return;
    this.granted.delete(this.granted.keys().next().value!);
    this.o.evicted?.inc();
  }
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}
