import type { Duplex } from 'node:stream';
import type { ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import { LiveSet } from '../../common/live-set.js';
import type { AuthzRequest, Decision } from './authorizer.js';
import type { CompiledInboundPolicy } from './compiled-policy.js';
import type { PolicyTelemetry } from './policy-telemetry.js';

/**
 * One inbound byte tunnel open to the app: what it was admitted with, and how to end it.
 * Nothing per byte: the splice counts its own.
 */
export interface OpenTunnel {
  /** `tcp`: a peer's CONNECT stream or a plaintext opaque splice; `upgrade`: a switched HTTP upgrade (WebSocket, extended CONNECT). */
  readonly kind: 'tcp' | 'upgrade';
  /** The authorization request it was admitted with (principal, port; an upgrade's method, path, headers, upgrade protocol and verified JWT). */
  readonly authz: AuthzRequest;
  /** A plaintext caller (no identity): also closed when its port becomes mTLS STRICT. */
  readonly plaintext: boolean;
  /** The caller's address, for the log line. */
  readonly peer: string | undefined;
  /**
   * The side whose destruction ends the tunnel. It is destroyed with an error, so the
   * splice (net/tcp-tunnel.ts) destroys the other side at once instead of waiting out its
   * half-close grace: both sides end together.
   */
  readonly end: Duplex;
}

/** Why a tunnel is refused now (null: still allowed). */
export type Verdict = { readonly why: 'mtls-strict' } | { readonly why: 'authorization'; readonly decision: Decision } | null;

/**
 * The inbound tunnels open to the app, re-authorized whenever the inbound policy changes.
 *
 * A plain HTTP request is authorized as it arrives (layers/authorize.ts), so a policy push
 * applies to the next request on a keep-alive connection. A tunnel has no next request:
 * without this, a tunnel admitted before a push that denies its caller (or removes the
 * ALLOW that admitted it) carried bytes for as long as it stayed open. Prior art:
 * istio/ztunnel PR #772 ("close connections which violate policy after updates") keeps
 * each connection's authorization inputs and, on a policy change, re-evaluates them and
 * closes the connections now denied, without draining; Istio's sidecars drain the
 * listeners whose RBAC filter changed. Here, as in ztunnel, each tunnel is judged again
 * with the request it was admitted with against the new policy: the ones now denied are
 * closed at once (both sides), counted (wren_tunnels_closed_total{reason}) and logged
 * with the deciding policy; the ones still allowed are not touched. A plaintext tunnel
 * whose port became STRICT is closed as well (the mode is checked first, as the plaintext
 * stack checks it before authorization).
 *
 * The tunnels of this listener thread only: with listener workers each worker applies the
 * push to its own (workers/worker-main.ts).
 */
export class OpenTunnels {
  private readonly open = new LiveSet<OpenTunnel>();

  constructor(
    private readonly policy: () => CompiledInboundPolicy,
    private readonly telemetry: PolicyTelemetry,
  ) {}

  /**
   * Tracks a tunnel until its `end` side closes, or until the returned remover is called:
   * a connection that stops being a tunnel while open (a plaintext one silent through
   * detection whose client then speaks HTTP, handed to the HTTP layers: plaintext-inbound.ts
   * afterSilence()) is no longer judged as one, its requests being authorized one by one.
   */
  add(t: OpenTunnel): () => void {
    const entry = this.open.add(t);
    const remove = (): void => {
      this.open.delete(entry);
      t.end.removeListener('close', remove);
    };
    t.end.once('close', remove);
    return remove;
  }

  /** A new inbound policy is in force: every open tunnel is judged again; the ones it refuses are closed. */
  policyChanged(policy: CompiledInboundPolicy): void {
    for (const t of this.open.values()) {
      const v = judge(policy, t);
      if (v === null) continue;
      this.report(t, v);
      t.end.on('error', ignore);
      t.end.destroy(new ProxyError(v.why === 'mtls-strict' ? 'UNAUTHENTICATED' : 'FORBIDDEN', 'the inbound policy changed'));
    }
  }

  /**
   * The sidecar closes (the end of its drain): every tunnel still open is closed, both sides
   * at once. Closing only the caller's side left the app's socket open until the splice's
   * 30 s half-close grace ran out, keeping the process alive past the kubelet's SIGKILL;
   * ztunnel likewise force-closes the connections still open at its drain deadline.
   */
  closeAll(): void {
    for (const t of this.open.values()) {
      t.end.on('error', ignore);
      t.end.destroy(new ProxyError('DRAINING', 'the sidecar is shutting down'));
    }
  }

  /**
   * The app's answer to an upgrade admitted under `admittedUnder`. A 101 is a tunnel from
   * now on: tracked (null). If a push landed while the app was answering, it is judged by
   * the policy now in force first; refused, the app's side is closed and the verdict is
   * returned, for the caller to get a refusal instead of the 101 (no byte of its has
   * reached the app).
   */
  switched(res: ProxyResponse, authz: AuthzRequest, admittedUnder: CompiledInboundPolicy, plaintext: boolean, peer: string): Verdict {
    if (res.status !== 101 || !res.body) return null;
    const t: OpenTunnel = { kind: 'upgrade', authz, plaintext, peer, end: res.body as Duplex };
    const now = this.policy();
    const v = now === admittedUnder ? null : judge(now, t);
    if (v === null) {
      this.add(t);
      return null;
    }
    this.report(t, v);
    res.body.destroy();
    return v;
  }

  private report(t: OpenTunnel, v: NonNullable<Verdict>): void {
    const { port, principal, http } = t.authz;
    if (v.why === 'mtls-strict') this.telemetry.plaintextRefused('tcp', port, t.peer);
    this.telemetry.tunnelClosed(v.why, t.kind, v.why === 'authorization' ? v.decision : null, { kind: http ? 'http' : 'tcp', principal, port, ...(http ? { method: http.method, path: http.path } : {}) });
  }
}

/** null: still allowed. */
function judge(policy: CompiledInboundPolicy, t: OpenTunnel): Verdict {
  if (t.plaintext && policy.modeFor(t.authz.port) === 'STRICT') return { why: 'mtls-strict' };
  if (!policy.authorizer.active) return null;
  const decision = policy.authorizer.authorize(t.authz);
  return decision.allow ? null : { why: 'authorization', decision };
}

const ignore = (): void => undefined;
