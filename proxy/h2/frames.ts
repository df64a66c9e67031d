/**
 * HTTP/2 framing (RFC 9113 section 4.1): the nine-octet frame header and the constants of
 * sections 6, 7 and 11. Plain objects of numbers, read by the session's hot path.
 */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export const SETTING = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes (RFC 9113 section 7). */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** The largest flow-control window (RFC 9113 section 6.9.1). */
export const MAX_WINDOW = 0x7fffffff;
/** Every window's size before SETTINGS say otherwise (section 6.9.2). */
export const DEFAULT_WINDOW = 65_535;
/** SETTINGS_MAX_FRAME_SIZE's initial value, and the most we accept (we never advertise more). */
export const DEFAULT_MAX_FRAME = 16_384;

/**
 * DATA frames in a row without data or END_STREAM (CVE-2019-9518, "empty frames flood"):
 * they carry nothing, cost a frame's work each and keep their stream from the stream idle
 * timeout. Envoy ends the connection at the second one
 * (max_consecutive_inbound_frames_with_empty_payload, default 1), which is what an app in
 * an Istio mesh already meets on its outbound connections; node:http2 counts them as
 * invalid frames (maxSessionInvalidFrames). HEADERS and CONTINUATION without a block are
 * the CONTINUATION guards' (MAX_CONTINUATIONS) and a malformed request's.
 */
export const MAX_EMPTY_DATA = 1;

/**
 * A DATA frame that counts toward MAX_EMPTY_DATA: not the stream's end, and with no data,
 * nothing but padding counting as none, as Envoy counts it.
 */
export function emptyDataFrame(flags: number, p: Buffer): boolean {
  return (flags & FLAG.END_STREAM) === 0 && (p.length === 0 || ((flags & FLAG.PADDED) !== 0 && p.length === p[0] + 1));
}

/** A frame header followed by `payload` bytes of which the caller writes the rest. */
export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = (length >>> 16) & 0xff;
  b[1] = (length >>> 8) & 0xff;
  b[2] = length & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & MAX_WINDOW, 5);
  return b;
}

/** A whole frame with a payload of 32-bit words (RST_STREAM, WINDOW_UPDATE, GOAWAY without debug data). */
export function wordsFrame(type: number, flags: number, streamId: number, ...words: number[]): Buffer {
  const b = Buffer.allocUnsafe(9 + 4 * words.length);
  b[0] = 0;
  b[1] = 0;
  b[2] = 4 * words.length;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & MAX_WINDOW, 5);
  for (let i = 0; i < words.length; i++) b.writeUInt32BE(words[i] >>> 0, 9 + 4 * i);
  return b;
}

/** A SETTINGS frame of `[id, value]` pairs (section 6.5.1). */
export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(9 + 6 * settings.length);
  b.writeUIntBE(6 * settings.length, 0, 3);
  b[3] = FRAME.SETTINGS;
  b[4] = 0;
  b.writeUInt32BE(0, 5);
  settings.forEach(([id, v], i) => {
    b.writeUInt16BE(id, 9 + 6 * i);
    b.writeUInt32BE(v >>> 0, 11 + 6 * i);
  });
  return b;
}

/** The payload without its padding (section 6.1), or null when the padding is invalid. */
export function stripPadding(flags: number, p: Buffer): Buffer | null {
  if ((flags & FLAG.PADDED) === 0) return p;
  if (p.length < 1) return null;
  const pad = p[0];
  if (pad >= p.length) return null;
  return p.subarray(1, p.length - pad);
}
