/**
 * Why a header block was refused, with the RFC rule it breaks.
 *
 * Two kinds, because HTTP/2 answers them differently:
 *  - COMPRESSION_ERROR (RFC 9113 section 4.3): the block broke an HPACK rule, so this
 *    decoder's dynamic table may no longer match the peer's encoder; the only safe answer
 *    is a connection error (GOAWAY with COMPRESSION_ERROR), and the decoder must not be used
 *    again.
 *  - HEADER_LIST_TOO_LARGE (RFC 9113 sections 6.5.2 and 8.2.2, RFC 6585 section 5): the
 *    block was valid HPACK but its decoded list exceeded maxHeaderListBytes. The decoder
 *    processed the whole block (table updates included), so it is still in sync with the
 *    peer: only the stream fails (RST_STREAM, or 431 for a request), the connection lives.
 *
 * A plain class, not an Error: the decoder returns it (no throw, no stack capture) for
 * every malformed block, which is the common case under a fuzzer or an attack.
 */
const REASONS = {
  truncated: 'RFC 7541 section 2.3 (a representation or string cut off at the end of the block)',
  'integer-overflow': 'RFC 7541 section 5.1 (integer exceeds implementation limits in value or octet length)',
  'index-zero': 'RFC 7541 section 6.1 (index 0 in an indexed header field)',
  'index-out-of-range': 'RFC 7541 section 2.3.3 (index beyond the static and dynamic tables)',
  'huffman-padding-too-long': 'RFC 7541 section 5.2 (Huffman padding longer than 7 bits)',
  'huffman-bad-padding': 'RFC 7541 section 5.2 (Huffman padding not the most significant bits of EOS)',
  'huffman-eos': 'RFC 7541 section 5.2 (Huffman string contains the EOS symbol)',
  'table-size-too-large': 'RFC 7541 section 6.3 (dynamic table size update above SETTINGS_HEADER_TABLE_SIZE)',
  'table-size-update-not-first': 'RFC 7541 section 4.2 (dynamic table size update after a header field)',
  'decoder-failed': 'RFC 9113 section 4.3 (decoder used after a COMPRESSION_ERROR)',
  'header-list-too-large': 'RFC 9113 section 6.5.2 (SETTINGS_MAX_HEADER_LIST_SIZE)',
} as const;

export type HpackReason = keyof typeof REASONS;

export class HpackError {
  readonly code: 'COMPRESSION_ERROR' | 'HEADER_LIST_TOO_LARGE';
  readonly message: string;

  /**
   * HEADER_LIST_TOO_LARGE only: the block's content-type, kept although the list was
   * dropped, so a server can still answer a gRPC caller in gRPC (HTTP 200 + grpc-status,
   * PROTOCOL-HTTP2.md) instead of a 431 its client reads as UNKNOWN.
   */
  constructor(
    readonly reason: HpackReason,
    readonly contentType?: string,
  ) {
    this.code = reason === 'header-list-too-large' ? 'HEADER_LIST_TOO_LARGE' : 'COMPRESSION_ERROR';
    this.message = `${this.code}: ${reason}: ${REASONS[reason]}`;
  }
}
