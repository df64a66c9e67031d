import { ProxyError, type ErrorCode } from '../errors/proxy-error.js';

/**
 * Why the codec refused a message: a stable reason (tests, logs, metrics) with the RFC
 * rule it enforces. The ProxyError code (and so the HTTP status, through the one error
 * table) depends on who sent the message: a bad request is the client's fault (400,
 * 431, 501), a bad response the upstream's (502).
 */
const REASONS = {
  'head-too-large': 'RFC 9112 section 2.3 / RFC 6585 section 5',
  'too-many-fields': 'RFC 6585 section 5',
  'trailers-too-large': 'RFC 9112 section 7.1.2',
  'bad-start-line': 'RFC 9112 sections 3 and 4',
  'bad-version': 'RFC 9112 section 2.3',
  'lowercase-method': 'RFC 9110 section 9.1',
  'bare-lf': 'RFC 9112 section 2.2',
  'bare-cr': 'RFC 9112 section 2.2',
  'obs-fold': 'RFC 9112 section 5.2',
  'bad-field-name': 'RFC 9112 section 5.1',
  'ws-before-colon': 'RFC 9112 section 5.1',
  'bad-field-value': 'RFC 9110 section 5.5',
  'missing-host': 'RFC 9112 section 3.2',
  'multiple-host': 'RFC 9112 section 3.2',
  'bad-host': 'RFC 9112 section 3.2',
  // A request-target neither origin-form, `*` nor an absolute-form the URL parser takes (h1-server.ts).
  'bad-target': 'RFC 9112 section 3.2',
  'bad-content-length': 'RFC 9112 section 6.3 item 5',
  'content-length-mismatch': 'RFC 9110 section 8.6, RFC 9112 section 6.3 item 5',
  'cl-and-te': 'RFC 9112 sections 6.3 item 3 and 11.2',
  'te-not-chunked': 'RFC 9112 section 6.3 item 4',
  'te-not-implemented': 'RFC 9112 section 6.1',
  'te-in-http10': 'RFC 9112 section 6.1',
  'bad-chunk-size': 'RFC 9112 section 7.1',
  'bad-chunk-ext': 'RFC 9112 section 7.1.1',
  'chunk-ext-too-long': 'RFC 9112 section 7.1.1',
  'chunk-no-crlf': 'RFC 9112 section 7.1',
  truncated: 'RFC 9112 section 8',
} as const;

export type H1Reason = keyof typeof REASONS;

export class H1Error extends ProxyError {
  constructor(
    readonly reason: H1Reason,
    readonly inResponse: boolean,
    detail: string,
  ) {
    super(codeFor(reason, inResponse), `${detail} (${REASONS[reason]})`);
  }
}

function codeFor(reason: H1Reason, inResponse: boolean): ErrorCode {
  if (reason === 'truncated') return inResponse ? 'UPSTREAM_RESET' : 'CLIENT_CANCELLED';
  if (inResponse) return 'UPSTREAM_PROTOCOL';
  if (reason === 'head-too-large' || reason === 'too-many-fields' || reason === 'trailers-too-large') return 'HEADERS_TOO_LARGE';
  if (reason === 'te-not-implemented') return 'NOT_IMPLEMENTED';
  return 'BAD_REQUEST';
}
