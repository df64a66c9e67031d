import type { Readable } from 'node:stream';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { MESH, NOT_FROM_APP, header, type Headers } from '../http/headers.js';
import { forwardH2, wasRefused } from '../http/h2-forward.js';
import { upgradeH1 } from '../http/h1-upgrade.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { CallerCells, CallerCounts } from '../net/shared-admission.js';
import { APP_CONNECT_TIMEOUT_MS, type AppConnector } from './app-connector.js';

export interface CallerLimits {
  /** Requests/streams one caller (peer identity; all plaintext callers together) may have open to the app. */
  readonly maxStreamsPerCaller: number;
  /** Where the callers' requests are counted: the sidecar's table, every listener worker's (shared-admission.ts). */
  readonly counts: CallerCounts;
  readonly onLimit: () => void;
}

/**
 * Terminal inbound service: plaintext to the app on its port, in the protocol the
 * original client spoke (`wren-orig-proto`: requests upgraded to HTTP/2 between the
 * sidecars are downgraded back to HTTP/1.1 here; the calling sidecar says HTTP/1.1 for an
 * HTTP/2 request to a port declared `http1`), through the app's connectors
 * (app-connector.ts): its h2c session, its HTTP/1.1 pool.
 *
 * Fairness between callers (issue 11, item 5): all callers share one HTTP/2 session to
 * the app, and an app stops taking streams on a session whose unread responses fill its
 * memory (Node: maxSessionMemory), so one caller that never reads could make the app
 * refuse everyone. Each caller (peer identity) may hold at most `maxStreamsPerCaller`
 * requests to the app at a time; beyond it that caller's requests fail at once with
 * OVERFLOW (503, not queued, as a circuit breaker's max_requests), counted as
 * `max-streams-per-caller`. Applies to HTTP/1.1 delivery too (the app's connections).
 * The count is the sidecar's: with listener workers, a caller whose connections the
 * kernel spread over several workers still has `maxStreamsPerCaller` in all
 * (shared-admission.ts: two cells per caller in a fixed table, so callers that share
 * both cells share one limit; a collision makes the limit stricter, never looser).
 */
export function deliverToApp(app: AppConnector, limits?: CallerLimits): HttpService {
  const callers = limits ? new CallerSlots(limits) : undefined;
  return (req) => {
    const port = req.targetPort;
    if (port === undefined) return Promise.reject(new ProxyError('BAD_REQUEST', 'no target port'));
    let slot: CallerSlot | undefined;
    if (callers) {
      const s = callers.take(req.source.identity);
      if (s instanceof ProxyError) return Promise.reject(s);
      slot = s;
    }
    const orig = header(req.headers, MESH.origProto);
    const headers = forApp(req.headers);
    if (orig === 'HTTP/1.1' && req.upgrade === undefined) {
      // The common HTTP/1.1 case: the pool's promise and one `then` whose handlers are the
      // caller's (made once per caller, not per request); no async frame.
      const up = app.h1.ready(app.endpoint(port));
      const p = up.pool.request(up.address, up.port, req, headers);
      return slot ? p.then(slot.onResponse, slot.onError) : p.then(fromApp);
    }
    return deliver(app, slot, req, headers, port);
  };
}

/**
 * One delivery of an upgrade or an HTTP/2 request: the caller's slot comes back through
 * one shared body handler (releaseOnDone).
 *
 * An HTTP/2 stream the app never processed (REFUSED_STREAM, or above its GOAWAY's last
 * stream id) is sent once more, on the pool's session then (a new one after a GOAWAY: the
 * pool drops a session that sent one), as RFC 9113 §8.7 allows for any request. Only
 * without a body: a body already piped into the refused stream is consumed.
 */
async function deliver(app: AppConnector, slot: CallerSlot | undefined, req: ProxyRequest, headers: Headers, port: number): Promise<ProxyResponse> {
  let res: ProxyResponse;
  try {
    if (req.upgrade !== undefined) {
      // An upgrade reaches the app as an HTTP/1.1 head rebuilt from the filtered headers, on a connection of its own.
      res = await upgradeH1(app.address, port, req, headers, { connectTimeoutMs: APP_CONNECT_TIMEOUT_MS, onLimit: app.onLimit, fromApp: true });
    } else if (app.frames !== undefined) {
      // The frame-level client retries a refused stream itself.
      res = await app.frames.request(port, req, headers);
    } else {
      const ep = app.endpoint(port);
      // The open session is taken synchronously; only opening one is awaited.
      let up = app.h2.ready(ep) ?? (await app.h2.connect(ep, APP_CONNECT_TIMEOUT_MS));
      try {
        res = await forwardH2(up.session, req, headers);
      } catch (err) {
        if (req.body !== null || !wasRefused(err) || req.signal.aborted) throw err;
        up = app.h2.ready(ep) ?? (await app.h2.connect(ep, APP_CONNECT_TIMEOUT_MS));
        res = await forwardH2(up.session, req, headers);
      }
    }
  } catch (err) {
    slot?.release();
    throw err;
  }
  return slot ? slot.onResponse(res) : fromApp(res);
}

/** The sidecars' own fields of a request, which the app never sees (x-forwarded-client-cert, also a mesh field, is for it). */
const NOT_FOR_APP: ReadonlySet<string> = new Set([MESH.origProto, MESH.targetPort, MESH.healthCheck, MESH.peer]);

/**
 * The request's fields as the app gets them: a copy without NOT_FOR_APP, not deletes from
 * the request's own. Deleting a field V8 has laid out turns the object into a dictionary,
 * slower for every later read and for the walk that encodes it: 0.75 µs against 0.16 for
 * building a gRPC call's dozen fields, dropping four and walking them (measured alone).
 */
function forApp(h: Headers): Headers {
  const out: Headers = {};
  for (const k in h) {
    if (NOT_FOR_APP.has(k)) continue;
    // As fieldsToHeaders (h1/head.ts): `__proto__` is an own field, never the prototype setter.
    if (k === '__proto__') Object.defineProperty(out, k, { value: h[k], writable: true, enumerable: true, configurable: true });
    else out[k] = h[k];
  }
  return out;
}

/*
 * NOT_FROM_APP (http/headers.ts): the fields only a sidecar writes on a response, which an
 * app's response must not carry to the calling sidecar: PROXY_ERROR_HEADER (the caller
 * reads it from a meshed endpoint as this sidecar's own failure to reach the app, a connect
 * failure that is always safe to retry: peer-outcome.ts fromPeerSidecar; an app that could
 * write it would have its POSTs replayed) and the mesh fields (`wren-upgraded` would make
 * the caller take an ordinary response for a switched tunnel), as the outbound drops them
 * from what its app sends (layers/strip-mesh-headers.ts). The app's trailers lose them in
 * the clients that read them (dropNotFromApp), when there are some: no per-response work here.
 */

/**
 * The app's response without NOT_FROM_APP. The names of the response are looked up in the
 * set (a few fields; the other way round is a megamorphic load per mesh name:
 * layers/strip-mesh-headers.ts); a field is deleted only when an app sent one, so the
 * usual response's map keeps its fast shape.
 */
function fromApp(res: ProxyResponse): ProxyResponse {
  const h = res.headers;
  for (const k in h) if (NOT_FROM_APP.has(k)) delete h[k];
  return res;
}

const SLOT = Symbol('wren.caller-slot');
type HeldBody = Readable & { [SLOT]?: CallerSlot };

/** Shared 'end'/'close' listener of every delivered response body: gives its caller's slot back once. */
function releaseOnDone(this: HeldBody): void {
  const slot = this[SLOT];
  if (!slot) return;
  this[SLOT] = undefined;
  slot.release();
}

/**
 * One caller's requests open to the app from this thread (the sidecar's count is in its
 * cells). It lives while the caller has some (and, up to IDLE_CALLERS of them, after), so
 * the response handlers it carries and its cells are found once per caller, not per request.
 */
class CallerSlot {
  open = 0;

  constructor(
    private readonly slots: CallerSlots,
    readonly caller: string,
    readonly cells: CallerCells,
  ) {}

  release(): void {
    this.slots.release(this);
  }

  /** The slot is held until the response body ends or closes (whichever first). The response leaves without NOT_FROM_APP. */
  readonly onResponse = (res: ProxyResponse): ProxyResponse => {
    fromApp(res);
    const b = res.body as HeldBody | null;
    if (b) {
      b[SLOT] = this;
      // on, not once: each event fires at most once and releaseOnDone releases once (no once() wrapper per request).
      b.on('end', releaseOnDone);
      b.on('close', releaseOnDone);
    } else this.release();
    return res;
  };

  readonly onError = (err: unknown): never => {
    this.release();
    throw err;
  };
}

/** Callers without a request open whose slot is kept for their next one (mesh identities: a handful per app). */
const IDLE_CALLERS = 256;

/** Requests each caller has open to the app, against maxStreamsPerCaller. */
class CallerSlots {
  private readonly held = new Map<string, CallerSlot>();

  constructor(private readonly limits: CallerLimits) {}

  /** Takes a slot for `caller`, or returns the OVERFLOW error (counted) when it has none left in the sidecar. */
  take(caller: string): CallerSlot | ProxyError {
    const { counts, maxStreamsPerCaller: max } = this.limits;
    let s = this.held.get(caller);
    if (!s) this.held.set(caller, (s = new CallerSlot(this, caller, counts.cellsOf(caller))));
    if (!counts.take(s.cells, max)) {
      this.limits.onLimit();
      // Its requests may all be in other workers: none here keeps no idle slot past the bound.
      this.forget(s);
      return new ProxyError('OVERFLOW', `the caller has ${max} requests open to the app (limit ${max})`);
    }
    s.open++;
    return s;
  }

  release(s: CallerSlot): void {
    if (s.open === 0) return;
    s.open--;
    this.limits.counts.release(s.cells);
    this.forget(s);
  }

  private forget(s: CallerSlot): void {
    if (s.open === 0 && this.held.size > IDLE_CALLERS) this.held.delete(s.caller);
  }
}
