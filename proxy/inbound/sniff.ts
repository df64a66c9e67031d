import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import { classifyPrefix } from '../net/detect-protocol.js';
import { peek } from '../net/peek.js';

export type Sniffed = 'tls' | 'http1' | 'http2' | 'opaque' | 'timeout' | 'stalled' | 'closed';

/** TLS record type 22 (handshake): every TLS connection starts with a ClientHello in one (RFC 8446 section 5.1). */
const TLS_HANDSHAKE = 0x16;

/**
 * What a connection on the inbound port starts with: a TLS handshake (mesh mTLS), an
 * HTTP/1.x request line, the HTTP/2 preface (h2c prior knowledge), or anything else.
 * The bytes read are put back (unshift) so the chosen handler, the TLS server included,
 * reads the stream from its start. 'timeout': the client said nothing in time (a
 * server-speaks-first protocol, or a slow TLS client); 'stalled': it sent bytes that were
 * not decisive (a prefix of a request line, of the h2 preface) and then nothing more in
 * time, plaintext that is handled as opaque but was decided by the timer, so counted as a
 * timeout; 'closed': it left first.
 */
export function sniff(socket: Socket, timeoutMs: number, clock: Clock): Promise<Sniffed> {
  return peek<Sniffed>(socket, timeoutMs, clock, {
    decide: (buf) => {
      if (buf[0] === TLS_HANDSHAKE) return 'tls';
      const c = classifyPrefix(buf);
      return c === 'need-more' ? null : c;
    },
    atEnd: (buf) => (buf.length ? 'opaque' : 'closed'),
    atTimeout: (buf) => (buf.length ? 'stalled' : 'timeout'),
  });
}
