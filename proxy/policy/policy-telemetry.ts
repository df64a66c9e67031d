import { Counter, type Registry } from '../metrics/prom.js';
import type { Logger } from '../../common/logger.js';
import type { Clock } from '../../common/clock.js';
import type { RecentDenial } from '../../contract/discovery.js';
import type { Decision } from './authorizer.js';
import type { JwtDenyReason } from './jwt-authenticator.js';
import type { JwksFetchOutcome } from './jwks-source.js';
import type { EgressClosed } from '../egress/open-passthroughs.js';

export type ConnectionOutcome = 'accepted' | 'refused';

/** Where a decision was made, for its log line (never header values: they may carry secrets). */
export interface DecisionContext {
  readonly kind: 'http' | 'tcp';
  readonly principal: string;
  readonly port: number;
  readonly method?: string;
  readonly path?: string;
}

/**
 * Metrics and logs of inbound policy enforcement, registered on the proxy's registry:
 * - wren_inbound_connections_total{tls="true|false", outcome="accepted|refused"}:
 *   connections on the inbound port, by whether they were mutual TLS; plaintext is
 *   refused on STRICT ports;
 * - wren_authz_decisions_total{action, decision, policy}: one per authorized request or
 *   tunnel (when any policy applies), plus one `decision="audit"` per matching AUDIT policy.
 * - wren_plaintext_strict_refused_total{protocol="http|tcp"}: plaintext traffic on
 *   connections accepted while their port was PERMISSIVE, refused once it is STRICT;
 * - wren_tunnels_closed_total{reason="authorization|mtls-strict|egress", kind="tcp|upgrade|tls"}:
 *   open tunnels closed when a new policy refused what they were admitted with: inbound
 *   (policy/open-tunnels.ts) and, reason egress, outbound passthroughs (egress/open-passthroughs.ts);
 * - wren_jwt_denied_total{reason}: requests refused (401) by RequestAuthentication;
 * - wren_jwt_verified_total{issuer}: requests whose token was verified;
 * - wren_jwks_fetches_total{source, outcome="ok|error|rate-limited"}: JWKS loads.
 * Denials and AUDIT matches are logged at info with the policy name; query strings are
 * dropped from logged paths. Token values are never logged.
 */
/** How many recent denials a proxy keeps and reports (StatsReport.recent_denials). */
export const RECENT_DENIALS = 20;

export class PolicyTelemetry {
  private readonly connections: Counter<'tls' | 'outcome'>;
  private readonly decisions: Counter<'action' | 'decision' | 'policy'>;
  private readonly children = new Map<string, { inc(): void }>();
  private readonly strictRefused: Counter<'protocol'>;
  private readonly tunnelsClosed: Counter<'reason' | 'kind'>;
  private readonly jwtDenied: Counter<'reason'>;
  private readonly jwtVerified: Counter<'issuer'>;
  private readonly jwksFetches: Counter<'source' | 'outcome'>;
  /** The last RECENT_DENIALS denials (a ring, oldest first once read), for the dashboard's "why" view. */
  private readonly denials: (Omit<RecentDenial, 'ageMs'> & { at: number })[] = [];

  constructor(registry: Registry, private readonly logger: Logger, private readonly clock?: Clock) {
    const registers = [registry];
    this.connections = new Counter({
      name: 'wren_inbound_connections_total',
      help: 'Connections accepted or refused on the inbound port, by tls="true" (mutual TLS) or "false" (plaintext)',
      labelNames: ['tls', 'outcome'],
      registers,
    });
    this.decisions = new Counter({
      name: 'wren_authz_decisions_total',
      help: 'Inbound authorization decisions by deciding action and policy; decision="audit" counts AUDIT policy matches',
      labelNames: ['action', 'decision', 'policy'],
      registers,
    });
    this.strictRefused = new Counter({
      name: 'wren_plaintext_strict_refused_total',
      help: 'Plaintext traffic on connections accepted while their port was PERMISSIVE, refused once the port is STRICT: http = a request answered 403 unauthenticated (its connection then closed), tcp = a plaintext byte stream (opaque splice, switched upgrade) closed when the policy changed',
      labelNames: ['protocol'],
      registers,
    });
    this.tunnelsClosed = new Counter({
      name: 'wren_tunnels_closed_total',
      help: 'Open tunnels closed because a new policy refuses what they were admitted with: inbound (tcp: a peer\'s CONNECT stream or a plaintext opaque splice; upgrade: a switched WebSocket or extended CONNECT) with reason authorization (an AuthorizationPolicy now denies it) or mtls-strict (plaintext on a port now STRICT); outbound passthroughs (tcp, tls) with reason egress (the egress settings no longer let the destination through)',
      labelNames: ['reason', 'kind'],
      registers,
    });
    this.jwtDenied = new Counter({
      name: 'wren_jwt_denied_total',
      help: 'Inbound requests refused with 401 because their JWT failed verification (RequestAuthentication), by reason',
      labelNames: ['reason'],
      registers,
    });
    this.jwtVerified = new Counter({ name: 'wren_jwt_verified_total', help: 'Inbound requests whose JWT was verified, by issuer', labelNames: ['issuer'], registers });
    this.jwksFetches = new Counter({
      name: 'wren_jwks_fetches_total',
      help: 'JWKS loads (URL or file) by source and outcome; rate-limited = an unknown-kid refetch skipped',
      labelNames: ['source', 'outcome'],
      registers,
    });
  }

  jwtOk(issuer: string): void {
    this.jwtVerified.inc({ issuer });
  }

  /** A refused token: the reason and where, never the token (nor the query string, which may carry it). */
  jwtDenial(reason: JwtDenyReason, issuer: string, ctx: DecisionContext): void {
    this.jwtDenied.inc({ reason });
    this.logger.info('JWT rejected', {
      code: 'JWT_INVALID', reason, issuer: issuer || null, principal: ctx.principal || '(unauthenticated)', port: ctx.port,
      ...(ctx.method !== undefined ? { method: ctx.method } : {}),
      ...(ctx.path !== undefined ? { path: ctx.path.split('?')[0] } : {}),
    });
  }

  jwksFetch(source: string, outcome: JwksFetchOutcome): void {
    this.jwksFetches.inc({ source, outcome });
  }

  /**
   * Plaintext refused on a connection opened before its port became STRICT: a request
   * (`http`, with its method and path, never the query) or a byte stream closed (`tcp`:
   * an opaque splice or a switched upgrade).
   */
  plaintextRefused(protocol: 'http' | 'tcp', port: number, peer: string | undefined, method?: string, path?: string): void {
    this.strictRefused.inc({ protocol });
    const where = { code: 'UNAUTHENTICATED', port, peer: peer ?? null, ...(method !== undefined ? { method } : {}), ...(path !== undefined ? { path: path.split('?')[0] } : {}) };
    this.logger.info(protocol === 'http' ? 'plaintext request refused (mTLS STRICT)' : 'plaintext connection closed: its port is now mTLS STRICT', where);
  }

  /**
   * An open tunnel closed by a policy change: counted by reason, and for an authorization
   * denial logged at info with the deciding policy (as a denied request is).
   */
  tunnelClosed(reason: 'authorization' | 'mtls-strict', kind: 'tcp' | 'upgrade', d: Decision | null, ctx: DecisionContext): void {
    this.tunnelsClosed.inc({ reason, kind });
    if (d === null) return; // mtls-strict: plaintextRefused() logged it
    // A denial like any other for the dashboard's "why" view, marked as a tunnel closed.
    this.remember(d, ctx, kind);
    this.logger.info('open tunnel closed: the new policy denies it', {
      code: 'FORBIDDEN', tunnel: kind, reason: d.reason, policy: d.policy || null, effectivePolicyId: d.effectivePolicyId || 'none',
      principal: ctx.principal || '(unauthenticated)', port: ctx.port,
      ...(ctx.method !== undefined ? { method: ctx.method } : {}),
      ...(ctx.path !== undefined ? { path: ctx.path.split('?')[0] } : {}),
    });
  }

  /** An outbound passthrough the new egress settings refuse, closed. */
  egressClosed(c: EgressClosed): void {
    this.tunnelsClosed.inc({ reason: 'egress', kind: c.sni !== undefined ? 'tls' : 'tcp' });
    this.logger.info('open egress connection closed: the new egress settings refuse it', { code: 'EGRESS_REFUSED', dst: c.dst, sni: c.sni ?? null, mode: c.mode });
  }

  connection(tls: boolean, outcome: ConnectionOutcome): void {
    this.connections.inc({ tls: tls ? 'true' : 'false', outcome });
  }

  private count(action: string, decision: string, policy: string): void {
    const key = `${action}|${decision}|${policy}`;
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = this.decisions.labels({ action, decision, policy })));
    c.inc();
  }

  decision(d: Decision, ctx: DecisionContext): void {
    this.count(d.action, d.allow ? 'allow' : 'deny', d.policy);
    const where = (): Record<string, unknown> => ({
      kind: ctx.kind,
      principal: ctx.principal || '(unauthenticated)',
      port: ctx.port,
      ...(ctx.method !== undefined ? { method: ctx.method } : {}),
      ...(ctx.path !== undefined ? { path: ctx.path.split('?')[0] } : {}),
    });
    for (const name of d.audited) {
      this.count('AUDIT', 'audit', name);
      this.logger.info('authorization audit', { policy: name, allowed: d.allow, ...where() });
    }
    // Only on a denial (already a log line): the allowed path pays nothing.
    if (!d.allow) this.remember(d, ctx, '');
    if (!d.allow) this.logger.info('denied by authorization policy', { code: 'FORBIDDEN', reason: d.reason, policy: d.policy || null, effectivePolicyId: d.effectivePolicyId || 'none', ...where() });
  }

  /** A denial into the ring the stats report carries (StatsReport.recent_denials). */
  private remember(d: Decision, ctx: DecisionContext, closedTunnel: '' | 'tcp' | 'upgrade'): void {
    if (!this.clock) return;
    if (this.denials.length >= RECENT_DENIALS) this.denials.shift();
    this.denials.push({
      at: this.clock.now(), policy: d.policy, action: d.action, reason: d.reason, principal: ctx.principal, method: ctx.method ?? '', path: (ctx.path ?? '').split('?')[0], port: ctx.port,
      rule: d.rule, effectivePolicyId: d.effectivePolicyId, policiesConsidered: [...d.considered], closedTunnel,
    });
  }

  /** The most recent denials, oldest first, each with how long ago it was (relative: the control plane's clock need not agree). */
  recentDenials(): RecentDenial[] {
    const now = this.clock?.now() ?? 0;
    return this.denials.map(({ at, ...d }) => ({ ...d, ageMs: Math.max(0, Math.round(now - at)) }));
  }
}
