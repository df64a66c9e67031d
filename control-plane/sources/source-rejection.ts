import { ConfigError } from '../../common/schema.js';

/**
 * An object a source read and currently rejects (it failed validation): the last good
 * version of it, if there was one, stays in force. Kept by the sources while the bad
 * version is what they hold, served on the admin port (GET /debug/rejected) and checked
 * by `wren check` (source-rejections, docs/operations.md), so a bad `kubectl apply` or a
 * bad edit is seen by more than a log line and a counter.
 */
export interface SourceRejection {
  /** The object's kind ('' when the file is not even YAML). */
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** The field path of the problem ('' : the object, or the file, as a whole). */
  readonly path: string;
  readonly reason: string;
  /** The directory source's file (as its errors show it); absent for Kubernetes objects. */
  readonly file?: string;
  /**
   * Set when no last good version stays in force and the object is enforced fail-closed
   * instead (an AuthorizationPolicy: failClosedAuthorizationPolicy; a PeerAuthentication:
   * failClosedPeerAuthentication): what is enforced.
   */
  readonly failClosed?: string;
}

/** A parser's error as a rejection of the object kind/namespace/name. */
export function rejectionOf(kind: string, namespace: string, name: string, e: unknown, file?: string, failClosed?: string): SourceRejection {
  const path = e instanceof ConfigError ? e.path : '';
  const reason = e instanceof ConfigError ? e.problem : (e as Error)?.message ?? String(e);
  return { kind, namespace, name, path, reason: reason.slice(0, 500), ...(file !== undefined ? { file } : {}), ...(failClosed !== undefined ? { failClosed } : {}) };
}
