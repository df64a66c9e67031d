/** Idempotent methods (RFC 9110 section 9.2.2): the requests a client may send again on its own after a connection failed. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
