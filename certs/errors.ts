/**
 * Errors from the PKI carry a stable `code` so callers (CA service, proxy, CLI) can
 * branch and log on it without matching message text.
 */
export type PkiErrorCode =
  | 'INVALID_SPIFFE_ID'
  | 'INVALID_PEM'
  | 'CSR_MALFORMED'
  | 'CSR_INVALID_SIGNATURE'
  | 'CSR_MISSING_SAN'
  | 'CSR_EXTRA_SANS'
  | 'CSR_IDENTITY_MISMATCH'
  | 'CSR_WEAK_KEY'
  | 'CSR_UNSUPPORTED_KEY'
  | 'CSR_TOO_LARGE'
  | 'TRUST_DOMAIN_MISMATCH'
  | 'INVALID_TTL'
  | 'CA_INVALID'
  | 'CA_KEY_MISMATCH'
  | 'CA_NOT_VALID'
  | 'CERT_NO_SPIFFE_ID'
  | 'CERT_MULTIPLE_URIS'
  | 'PEER_IDENTITY_MISMATCH';

export class PkiError extends Error {
  constructor(
    readonly code: PkiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PkiError';
  }
}
