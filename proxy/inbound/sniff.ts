import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import { classifyPrefix } from '../net/detect-protocol.js';

export type Sniffed = 'tls' | 'http1' | 'http2' | 'opaque' | 'timeout' | 'closed';

/** TLS record type 22 (handshake): every TLS connection starts with a ClientHello in one (RFC 8446 section 5.1). */
const TLS_HANDSHAKE = 0x16;

/**
 * What a connection on the inbound port starts with: a TLS handshake (mesh mTLS), an
 * HTTP/1.x request line, the HTTP/2 preface (h2c prior knowledge), or anything else.
 * The bytes read are put back (unshift) so the chosen handler, the TLS server included,
 * reads the stream from its start. 'timeout': the client said nothing in time (a
 * server-speaks-first protocol, or a slow TLS client); 'closed': it left first.
 */
export function sniff(socket: Socket, timeoutMs: number, clock: Clock): Promise<Sniffed> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (d: Sniffed) => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.pause();
      if (buf.length) socket.unshift(buf);
      resolve(d);
    };
    const onData = (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (buf[0] === TLS_HANDSHAKE) return finish('tls');
      const c = classifyPrefix(buf);
      if (c !== 'need-more') finish(c);
    };
    const onEnd = () => finish(buf.length ? 'opaque' : 'closed');
    const timer = clock.setTimeout(() => finish(buf.length ? 'opaque' : 'timeout'), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}
