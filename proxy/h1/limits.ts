/**
 * Bounds on what one HTTP/1.1 message may make the codec hold. Every partial line the
 * parser keeps between socket reads is bounded by one of these, so a slow or hostile
 * peer can never make a connection's parser grow without bound.
 */
export interface H1Limits {
  /**
   * Request/status line plus header fields, CRLFs included (and, separately, the trailer
   * section). Over it: 431 naming the limit for a request (RFC 6585 section 5), a protocol
   * error for a response. Default 16 KiB, the proxy's `limits.maxHeaderBytes` default.
   */
  readonly maxHeadBytes: number;
  /** Field lines in a head (or in a trailer section). Envoy's `max_headers_count` default: 100. */
  readonly maxHeaderCount: number;
  /**
   * The trailer section's bytes, when they differ from maxHeadBytes (the default): the
   * mesh's HTTP/1.1 messages carrying HTTP/2 ones, whose trailers HTTP/2 bounds apart from
   * the head (http/h1-server.ts meshHeadroom, outbound/peer-pool.ts PEER_SESSION_HEADERS).
   */
  readonly maxTrailerBytes?: number;
  /**
   * Bytes of chunk extensions on one chunk-size line. Node caps them too since
   * CVE-2024-22019 (a peer could otherwise send endless extensions and no data).
   */
  readonly maxChunkExtBytes: number;
}

export const DEFAULT_H1_LIMITS: H1Limits = Object.freeze({
  maxHeadBytes: 16 * 1024,
  maxHeaderCount: 100,
  maxChunkExtBytes: 1024,
});

/**
 * Interim (1xx) responses a client to an app or endpoint takes before the final response
 * to one request (the HTTP/1.1 pool, h1-pool-conn.ts, and the frame-level HTTP/2 client,
 * h2/h2-client-stream.ts). RFC 9110 section 15.2 lets a server send "one or more", and sets
 * no bound; without one an app answering a request with 100s or 103s forever holds the
 * request and spends the sidecar's CPU on heads it drops. Envoy resets the stream on a
 * second 100-Continue (envoyproxy/envoy#2567); a few 103 Early Hints and a 100 fit well
 * under this. Past it the response is a protocol error: 502, UPSTREAM_PROTOCOL (UPE),
 * counted in wren_limit_exceeded_total{limit="interim-responses"}.
 */
export const MAX_INTERIM_RESPONSES = 16;

/** Longest chunk-size the parser accepts: 13 hex digits (< 2^52, exact in a double). */
export const MAX_CHUNK_SIZE_DIGITS = 13;
