import type { BodyStream, HttpService, ProxyRequest } from '../http/exchange.js';
import { settledBody } from '../http/settled-body.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Clock, Random } from '../../common/clock.js';
import type { Mirror } from './port-routing.js';
import { keepable } from '../net/body-buffers.js';
import { Cancel } from '../../common/cancel.js';

/** A mirrored request carries at most this much body; a bigger request is not mirrored (counted `body-too-large`). */
export const MIRROR_MAX_BODY_BYTES = 64 * 1024;
/** A mirrored request that has not completed by then is cancelled (counted `timeout`). */
export const MIRROR_TIMEOUT_MS = 10_000;

export type MirrorResult = 'sent' | 'failed' | 'timeout' | 'body-too-large' | 'no-target' | 'upgrade';

export interface MirrorDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** One count per mirror decided on (wren_route_mirror_requests_total{result}). */
  readonly count: (result: MirrorResult) => void;
  readonly maxBodyBytes?: number;
  readonly timeoutMs?: number;
}

/**
 * RequestMirror (HTTPRequestMirrorFilter): a fire-and-forget copy of the request to
 * another service port, its response discarded (the spec: "Responses from the mirrored
 * backend are ignored"). The copy goes through the same layers below routing (the mirror
 * target's cluster, limits and policy); whatever happens to it never touches the original
 * request. The body is copied as it passes to the original's consumer (no extra read,
 * no backpressure added) and the copy sent once it has ended, bounded by maxBodyBytes.
 * `percent` samples (the spec's `percent` / `fraction`).
 */
export function mirrorRequest(d: MirrorDeps, req: ProxyRequest, m: Mirror, send: HttpService): void {
  if (m.percent < 100 && d.random() * 100 >= m.percent) return;
  // An upgrade (WebSocket) is not mirrored: what follows the 101 is a byte stream with no
  // end the mirror could wait for, so the copy would hold a tunnel (a peer stream, an app
  // connection) open on the mirror target for good, and nothing can be replayed into it.
  if (req.upgrade !== undefined) return d.count('upgrade');
  const target = m.target;
  if (target === null) return d.count('no-target');
  const body = req.body;
  // The copy's headers are taken now: what the rule's filters made of the request.
  const headers = { ...req.headers };
  if (body === null) return dispatch(d, req, headers, null, target, send);
  const max = d.maxBodyBytes ?? MIRROR_MAX_BODY_BYTES;
  let chunks: Buffer[] | null = [];
  let size = 0;
  // prependListener does not switch the body to flowing mode: chunks are seen as the original's consumer takes them.
  body.prependListener('data', (c: Buffer) => {
    if (chunks === null) return;
    size += c.length;
    if (size > max) chunks = null;
    else chunks.push(keepable(c));
  });
  body.once('end', () => {
    if (chunks === null) return d.count('body-too-large');
    dispatch(d, req, headers, settledBody(Buffer.concat(chunks, size)), target, send);
  });
}

function dispatch(d: MirrorDeps, req: ProxyRequest, headers: ProxyRequest['headers'], body: BodyStream | null, target: Mirror['target'] & object, send: HttpService): void {
  const ac = new Cancel();
  const ms = d.timeoutMs ?? MIRROR_TIMEOUT_MS;
  let done = false;
  const finish = (result: MirrorResult): void => {
    if (done) return;
    done = true;
    d.clock.clearTimeout(timer);
    d.count(result);
  };
  let resBody: BodyStream | null = null;
  const timer = d.clock.setTimeout(() => {
    ac.abort(new ProxyError('REQUEST_TIMEOUT', `mirror not done after ${ms} ms`));
    // A response still streaming when the mirror is given up: its upstream is let go too.
    resBody?.destroy();
    finish('timeout');
  }, ms);
  const copy: ProxyRequest = { ...req, headers, body, signal: ac.signal, route: target, endpoint: undefined };
  let res;
  try {
    res = send(copy);
  } catch {
    return finish('failed');
  }
  res.then(
    (r) => {
      const b = r.body;
      if (b === null) return finish(r.proxyError === undefined ? 'sent' : 'failed');
      const result: MirrorResult = r.proxyError === undefined ? 'sent' : 'failed';
      resBody = b;
      b.once('end', () => finish(result));
      b.once('close', () => finish(result));
      b.once('error', () => finish('failed'));
      b.resume();
    },
    () => finish(ac.signal.aborted ? 'timeout' : 'failed'),
  );
}
