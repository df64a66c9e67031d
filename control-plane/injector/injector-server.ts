import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLogger, type Logger } from '../../common/logger.js';
import { AdmissionError, mutateWithReason } from './admission.js';
import type { InjectOptions } from './options.js';

export interface InjectorServerOptions {
  readonly tls: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** 15017 in the mesh; 0 picks a free port (tests). */
  readonly port?: number;
  readonly host?: string;
  readonly opts?: Partial<InjectOptions>;
  readonly logger?: Logger;
  /** Bounds on what clients may hold (WEBHOOK_LIMITS); tests lower them. */
  readonly limits?: Partial<WebhookLimits>;
}

/**
 * What one client, or all of them together, can make the webhook hold. It runs inside the
 * control plane, next to identity and discovery, and 15017 is reachable from every pod (no
 * client certificate: the API server presents none by default, and neither Istio's nor
 * Linkerd's injector asks for one), so without bounds any pod could make the process buffer
 * 4 MiB per connection for Node's default 300 s request timeout and have it OOM-killed,
 * taking workload certificates and configuration down with the injector.
 */
export interface WebhookLimits {
  /** AdmissionReview bodies are bounded by the API server's 3 MiB request limit plus envelope. */
  readonly maxBodyBytes: number;
  /** Request bodies being read, all connections together; past it a request gets 503. */
  readonly maxBufferedBytes: number;
  /**
   * The whole request must arrive within this. The API server gives up on a webhook after
   * its timeoutSeconds, at most 30 (admissionregistration.k8s.io/v1): a request still
   * arriving after that is not the API server's.
   */
  readonly requestTimeoutMs: number;
  /** The TLS handshake and then the request head, each within this. */
  readonly headersTimeoutMs: number;
  readonly maxConnections: number;
  /**
   * Deepest nesting of arrays and objects read. V8's JSON.parse takes ~3 s of the control
   * plane's one thread for 4 MiB of `[[[[…]]]]`; an AdmissionReview of a Pod nests about
   * 15 deep (request.object.spec.containers[i].livenessProbe.httpGet.httpHeaders[j]…).
   */
  readonly maxJsonDepth: number;
}

export const WEBHOOK_LIMITS: WebhookLimits = Object.freeze({
  maxBodyBytes: 4 * 1024 * 1024,
  maxBufferedBytes: 32 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  maxConnections: 1024,
  maxJsonDepth: 64,
});

/** Whether the JSON text `b` nests arrays and objects deeper than `limit` (strings skipped): one pass, stopping once past it. */
function nestsDeeperThan(b: Buffer, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next byte is escaped
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * The TLS settings of the webhook's server. `setSecureContext` resets every option it is
 * not given (minVersion included), so rotation must pass these again, not just cert/key.
 */
export function webhookTlsOptions(tls: InjectorServerOptions['tls']): { cert: string | Buffer; key: string | Buffer; minVersion: 'TLSv1.2' } {
  return { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' };
}

/**
 * The sidecar-injection webhook: POST /inject takes an AdmissionReview v1 and answers
 * one; GET /healthz is for probes. The API server only speaks HTTPS to webhooks, so the
 * server is HTTPS-only. It starts listening before returning; rotate the certificate
 * with `server.setSecureContext(webhookTlsOptions({ cert, key }))` (webhook-listener.ts
 * does that when the mounted Secret changes).
 */
export function createInjectorServer(o: InjectorServerOptions): Server {
  const log = (o.logger ?? createLogger()).child({ component: 'injector' });
  const limits: WebhookLimits = { ...WEBHOOK_LIMITS, ...o.limits };
  const buffered: Buffered = { bytes: 0, busyLogged: false };
  const server = createServer(
    {
      ...webhookTlsOptions(o.tls),
      handshakeTimeout: limits.headersTimeoutMs,
      // Node requires headersTimeout <= requestTimeout.
      headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
      requestTimeout: limits.requestTimeoutMs,
      // How often Node checks the two timeouts above (default 30 s, which would double them).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    (req, res) => {
      handle(req, res, o.opts ?? {}, log, limits, buffered).catch((err: unknown) => {
        log.error('injector request failed', { err });
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
      });
    },
  );
  server.maxConnections = limits.maxConnections;
  server.listen(o.port ?? 15017, o.host ?? '0.0.0.0');
  return server;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Body bytes held by all requests together; busyLogged: the 503 was logged since they last were 0 (one line per busy spell, not per refusal). */
interface Buffered {
  bytes: number;
  busyLogged: boolean;
}

/** A refusal sent before the body was read to its end: `connection: close` makes Node close the connection after it instead of draining the rest. */
function refuse(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('connection', 'close');
  send(res, status, body);
}

/**
 * The body, counted against `buffered` (every request's bytes held at once) until the
 * caller's `release`; 413 past maxBodyBytes (a declared content-length already), 503 past
 * maxBufferedBytes.
 */
function readBody(req: IncomingMessage, limits: WebhookLimits, buffered: Buffered): Promise<{ body: Buffer; release: () => void } | 413 | 503> {
  const declared = Number(req.headers['content-length']);
  if (declared > limits.maxBodyBytes) return Promise.resolve(413);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let held = 0;
    const release = () => {
      buffered.bytes -= held;
      held = 0;
      if (buffered.bytes === 0) buffered.busyLogged = false;
    };
    const done = (r: { body: Buffer; release: () => void } | 413 | 503 | Error) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (typeof r === 'object' && !(r instanceof Error)) return resolve(r);
      release();
      // Stop reading: the rest of an oversized or unaffordable body is never buffered.
      req.pause();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const onData = (c: Buffer) => {
      if (held + c.length > limits.maxBodyBytes) return done(413);
      if (buffered.bytes + c.length > limits.maxBufferedBytes) return done(503);
      buffered.bytes += c.length;
      held += c.length;
      chunks.push(c);
    };
    const onEnd = () => done({ body: Buffer.concat(chunks, held), release });
    const onError = (e: Error) => done(e);
    // Closed before the end (the client went away, or the request timeout fired).
    const onClose = () => done(new Error('request closed before its body ended'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: Partial<InjectOptions>, log: Logger, limits: WebhookLimits, buffered: Buffered): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (path !== '/inject') return send(res, 404, { error: `no route ${path}` });
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    return send(res, 405, { error: 'use POST' });
  }
  let read: Awaited<ReturnType<typeof readBody>>;
  try {
    read = await readBody(req, limits, buffered);
  } catch (e) {
    // The client is gone: nobody to answer.
    log.debug('injector request ended early', { error: (e as Error).message });
    return;
  }
  if (read === 413) return refuse(res, 413, { error: `body over ${limits.maxBodyBytes} bytes` });
  if (read === 503) {
    if (!buffered.busyLogged) log.warn('injector busy: request bodies being read are at their limit; refusing with 503 (the API server then refuses the pod, failurePolicy Fail, and its controller retries; with Ignore it starts without a proxy)', { maxBufferedBytes: limits.maxBufferedBytes });
    buffered.busyLogged = true;
    return refuse(res, 503, { error: 'busy, retry' }, { 'retry-after': '1' });
  }
  try {
    answer(read.body, res, opts, log, limits);
  } finally {
    read.release();
  }
}

function answer(body: Buffer, res: ServerResponse, opts: Partial<InjectOptions>, log: Logger, limits: WebhookLimits): void {
  if (nestsDeeperThan(body, limits.maxJsonDepth)) return send(res, 400, { error: `body nests deeper than ${limits.maxJsonDepth} levels` });
  let review: unknown;
  try {
    review = JSON.parse(body.toString('utf8'));
  } catch {
    return send(res, 400, { error: 'body is not JSON' });
  }
  try {
    const out = mutateWithReason(review, opts);
    const r = (review as { request: { namespace?: string; object?: { metadata?: { name?: string; generateName?: string } } } }).request;
    log.info(out.injected ? 'injected' : 'not injected', {
      namespace: r.namespace,
      pod: r.object?.metadata?.name || r.object?.metadata?.generateName,
      reason: out.reason,
      // kubectl shows these for a pod it creates; a controller's pods (a Deployment's) have them in wren.io/inject-warnings (admission.ts), cut to its bound, and here in full.
      ...(out.review.response?.warnings ? { warnings: out.review.response.warnings } : {}),
    });
    send(res, 200, out.review);
  } catch (e) {
    if (e instanceof AdmissionError) return send(res, 400, { error: e.message });
    throw e;
  }
}
