import type { Duplex } from 'node:stream';
import type { SpliceIdle } from './tcp-tunnel.js';
import type { Timer } from '../../common/clock.js';

/** Who sent the first byte once both ends of a tunnel were open: 'end' (either side ended or closed first), 'idle' (neither, within the idle bound). */
export type FirstSpeaker = 'app' | 'client' | 'end' | 'idle';

/**
 * Waits for the first byte from either end of a tunnel about to be spliced and puts it
 * back (unshift), both ends left paused, so the caller can still look at the client's bytes
 * before anything reaches the app. For a connection that was silent through protocol
 * detection: a server-speaks-first app greets as soon as it is dialled ('app', splice it),
 * while a client that speaks first after the timer has to be judged like any first bytes
 * (an HTTP request that waited out the timer must not be spliced unparsed). Bounded by the
 * tunnel's idle timeout (limits.tcpIdleTimeoutMs; 0: none).
 */
export function firstSpeaker(client: Duplex, app: Duplex, idle: SpliceIdle): Promise<FirstSpeaker> {
  return new Promise((resolve) => {
    let done = false;
    let timer: Timer | undefined;
    const finish = (r: FirstSpeaker, from?: Duplex, chunk?: Buffer): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) idle.clock.clearTimeout(timer);
      for (const s of [client, app]) {
        s.removeListener('data', s === client ? onClient : onApp);
        s.removeListener('end', onEnd);
        s.removeListener('close', onEnd);
        s.pause();
      }
      if (from && chunk) from.unshift(chunk);
      resolve(r);
    };
    const onClient = (c: Buffer): void => finish('client', client, c);
    const onApp = (c: Buffer): void => finish('app', app, c);
    const onEnd = (): void => finish('end');
    for (const s of [client, app]) {
      s.once('end', onEnd);
      s.once('close', onEnd);
    }
    client.on('data', onClient);
    app.on('data', onApp);
    // Detection left the client paused (peek.ts): a 'data' listener alone does not restart a stream paused on purpose.
    client.resume();
    app.resume();
    if (idle.ms > 0) timer = idle.clock.setTimeout(() => finish('idle'), idle.ms);
  });
}
