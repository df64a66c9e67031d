import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import { peek } from '../net/peek.js';

/** A TLS record is at most 2^14 bytes of plaintext (RFC 8446 section 5.1) plus its 5-byte header. */
const MAX_RECORD = 5 + (1 << 14);
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const HOST_NAME = 0x00;

/**
 * The server name of a TLS ClientHello at the start of `b`: the host_name of its
 * server_name extension (RFC 6066 section 3), lower case; '' when the hello has none;
 * null when `b` is not a ClientHello; 'need-more' while its first record is incomplete.
 * Only the first record is read: a ClientHello that spans records (over 16 KiB) is
 * parsed as far as that record goes, where every client puts the server_name.
 */
export function parseSni(b: Buffer): string | null | 'need-more' {
  if (b.length === 0) return 'need-more';
  if (b[0] !== HANDSHAKE) return null;
  if (b.length < 5) return 'need-more';
  if (b[1] !== 0x03) return null;
  const recordLen = b.readUInt16BE(3);
  if (recordLen === 0 || recordLen > 1 << 14) return null;
  if (b.length < 5 + recordLen) return 'need-more';
  const end = 5 + recordLen;
  let i = 5;
  if (b[i] !== CLIENT_HELLO) return null;
  i += 4; // msg_type, uint24 length
  i += 2 + 32; // legacy_version, random
  if (i >= end) return null;
  i += 1 + b[i]; // legacy_session_id
  if (i + 2 > end) return null;
  i += 2 + b.readUInt16BE(i); // cipher_suites
  if (i >= end) return null;
  i += 1 + b[i]; // legacy_compression_methods
  if (i + 2 > end) return ''; // no extensions at all (SSL 3.0 style hello)
  const extEnd = Math.min(end, i + 2 + b.readUInt16BE(i));
  i += 2;
  while (i + 4 <= extEnd) {
    const type = b.readUInt16BE(i);
    const len = b.readUInt16BE(i + 2);
    i += 4;
    if (i + len > extEnd) return null;
    if (type === EXT_SERVER_NAME) {
      // ServerNameList: uint16 length, then entries of name_type, uint16 length, name.
      let j = i + 2;
      while (j + 3 <= i + len) {
        const nameType = b[j];
        const nameLen = b.readUInt16BE(j + 1);
        j += 3;
        if (j + nameLen > i + len) return null;
        if (nameType === HOST_NAME) return b.toString('latin1', j, j + nameLen).toLowerCase();
        j += nameLen;
      }
      return '';
    }
    i += len;
  }
  return '';
}

/**
 * Reads (without consuming: peek puts the bytes back) the connection's ClientHello and
 * returns its SNI; undefined when the bytes are not a ClientHello, it has no SNI, or it
 * did not arrive within `timeoutMs`. `onTimeout` is told when the timer decided (a client
 * that began a TLS record and stalled, or sent it slower than the timeout), for the
 * caller to count: the connection is then matched as if it had no SNI.
 */
export function peekSni(socket: Socket, timeoutMs: number, clock: Clock, onTimeout?: () => void): Promise<string | undefined> {
  const sni = peek<string | undefined>(socket, timeoutMs, clock, {
    decide: (buf) => {
      const r = parseSni(buf);
      if (r === 'need-more') return buf.length >= MAX_RECORD ? '' : null;
      return r ?? '';
    },
    atEnd: () => '',
    atTimeout: () => {
      onTimeout?.();
      return '';
    },
  }).then((s) => (s === '' ? undefined : s));
  // Protocol detection left the socket paused with its bytes put back: let them flow again
  // (peek's listener is attached already; peek pauses the socket once more when it decides).
  socket.resume();
  return sni;
}
