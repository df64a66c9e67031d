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
}

/** AdmissionReview bodies are bounded by etcd's 1.5 MiB object limit plus envelope. */
const MAX_BODY = 4 * 1024 * 1024;

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
  const server = createServer(webhookTlsOptions(o.tls), (req, res) => {
    handle(req, res, o.opts ?? {}, log).catch((err: unknown) => {
      log.error('injector request failed', { err });
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
    });
  });
  server.listen(o.port ?? 15017, o.host ?? '0.0.0.0');
  return server;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) return undefined;
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: Partial<InjectOptions>, log: Logger): Promise<void> {
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
  const body = await readBody(req);
  if (body === undefined) return send(res, 413, { error: `body over ${MAX_BODY} bytes` });
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
    });
    send(res, 200, out.review);
  } catch (e) {
    if (e instanceof AdmissionError) return send(res, 400, { error: e.message });
    throw e;
  }
}
